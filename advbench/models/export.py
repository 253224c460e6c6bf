"""Any advbench model as a standard Keras 3 ``.keras`` file.

The file opens with ``keras.saving.load_model(path)`` (safe mode) anywhere Keras 3 runs. Two
of advbench's layers are custom and need ``import advbench.models.layers`` before loading
(the import registers them with Keras): ``FeatureSqueezing`` (models trained with
``--defense feature-squeezing``) and ``LogProbabilities`` (foreign models read with
``--outputs probabilities``). BRELU is Keras' own ``ReLU(max_value=t)``, and a foreign
model's input range, mean and std are Keras' ``Rescaling`` and ``Normalization``: files
without the two custom layers need nothing of advbench.
"""

from __future__ import annotations

from pathlib import Path

import keras

from advbench.core.errors import ParameterError
from advbench.core.files import atomic_write, output_lock, refuse_existing
from advbench.core.types import Model, PathLike

#: advbench's own layers: loading a file that has them needs ``import advbench.models.layers``.
CUSTOM_LAYERS = ("FeatureSqueezing", "LogProbabilities")
#: Why a SavedModel is not exported (said before it loads, and again if one is wrapped).
SAVEDMODEL_NOT_EXPORTED = ("a SavedModel cannot be written as a .keras file (Keras stores "
                           "layers, not compiled graphs); it is already a standard format")


def check_keras_name(path: PathLike) -> None:
    """ParameterError unless ``path`` ends in .keras, the only name Keras 3 saves to."""
    if Path(path).suffix != ".keras":
        raise ParameterError(f"export writes a Keras 3 file; name it *.keras, not "
                             f"{Path(path).name}")


def custom_layers(model: Model) -> list[str]:
    """Names of the advbench layers in ``model`` that a loader must register first."""
    return sorted({type(layer).__name__ for layer in model.layers
                   if type(layer).__name__ in CUSTOM_LAYERS})


def export_keras(model: Model, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` (a ``.keras`` file) through the one atomic writer, holding
    the output lock (``files.atomic_write``, ``files.output_lock``); returns the path.

    Raises ParameterError for another suffix or a model wrapping a SavedModel (a compiled
    graph Keras cannot store in a .keras file; export the original model instead);
    OutputError when ``path`` exists (unless ``overwrite``), another run writes it, or the
    disk refuses (a full disk, a read-only folder, a file where a folder must be).
    """
    path = Path(path)
    check_keras_name(path)
    if any(isinstance(layer, keras.layers.TFSMLayer) for layer in model.layers):
        raise ParameterError(SAVEDMODEL_NOT_EXPORTED)
    with output_lock(path, "model file"):
        refuse_existing(path, overwrite=overwrite)
        # Keras saves only to a name ending in .keras.
        with atomic_write(path, "model file", suffix=".tmp.keras") as tmp:
            model.save(tmp)
    return path


#: The layers ``models.adapt.Preprocessing.layers`` puts in front of a user's model.
PREPROCESSING_LAYERS = ("input_range", "input_normalization")
#: Layers that may come before them without caring about the pixel scale.
_LAYOUT_LAYERS = ("drop_channel_axis", "channels_first")


def with_original_input(model: Model) -> tuple[Model, str | None]:
    """``model`` taking what the user's own model took: the input range / normalization that
    advbench put in front of it (``--input-range/--mean/--std``, or read from the model's own
    Rescaling layers) left out, so that a model holding ``Rescaling(1/255)`` keeps taking
    0-255 pixels. Returns (model, a sentence saying what the exported model takes), or
    (``model``, None) when advbench put nothing in front. Where a layer that needs [0, 1]
    (feature squeezing) comes first, the model is kept as is and the sentence says so loudly.
    """
    from advbench.models.adapt import call_graph

    names = [layer.name for layer in model.layers]
    if "input_range" not in names:
        return model, None
    scale_layer = model.get_layer("input_range")
    low, high = scale_layer.offset, scale_layer.offset + scale_layer.scale
    before = names[1:names.index("input_range")]
    if any(name not in _LAYOUT_LAYERS for name in before):
        return model, (f"Warning: the exported model takes [0, 1] images (advbench's "
                       f"convention), not the {low:g}..{high:g} pixels your model took, "
                       f"because {', '.join(before)} needs [0, 1] first: feed it x / "
                       f"{high - low:g}")

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in PREPROCESSING_LAYERS else layer(*args, **kwargs)

    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    stripped = keras.Model(inputs, call_graph(model, inputs, call), name=model.name)
    return stripped, (f"the exported model takes {low:g}..{high:g} pixels, as your model did "
                      "(advbench's input range layer left out), and gives logits")
