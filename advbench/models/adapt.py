"""Putting a model into advbench's convention: float32 NHWC images in [0, 1] in, logits out.

``adapt`` builds one flat functional model (no nested models, so the attack twin of
``models.gradients`` sees every convolution) around the user's layers, which it shares
(same weights):

    image in [0, 1] -> [Reshape / Permute to the model's input layout]
                    -> [Rescaling, Normalization: the model's input range, mean, std]
                    -> the model's own layers -> [its final softmax removed]
                    -> [LogProbabilities, when told the outputs are probabilities]

``convert_relu`` and ``reinitialize`` prepare a user's architecture for ``train --model``:
every ReLU turned into BRELU (Zantedeschi et al. 2017, Section 3: f_t(x) = min(max(x, 0), t))
and fresh weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import keras
import numpy as np

from advbench.errors import ArtifactError, ParameterError
from advbench.models.layers import LogProbabilities
from advbench.names import OUTPUTS
from advbench.types import Model



@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What the model expects where advbench gives [0, 1] pixels: ``(low + x * (high - low)
    - mean) / std`` per channel (``--input-range LOW:HIGH``, ``--mean``, ``--std``)."""

    input_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @property
    def identity(self) -> bool:
        return (self.input_range == (0.0, 1.0) and set(self.mean) <= {0.0}
                and set(self.std) <= {1.0})

    def check(self, channels: int) -> None:
        low, high = self.input_range
        if not high > low:
            raise ParameterError(f"--input-range must be LOW:HIGH with HIGH > LOW, got "
                                 f"{low:g}:{high:g}")
        for flag, values in (("--mean", self.mean), ("--std", self.std)):
            if len(values) not in (1, channels):
                raise ParameterError(f"{flag} has {len(values)} values for {channels}-channel "
                                     f"images; give one value or {channels}")
        if any(not s > 0 for s in self.std):
            raise ParameterError(f"--std values must be > 0, got {list(self.std)}")

    def layers(self, channels: int) -> list:
        """Keras built-in layers doing it (so exported files need nothing of advbench)."""
        low, high = self.input_range
        out = [keras.layers.Rescaling(scale=high - low, offset=low, name="input_range")]
        if not (set(self.mean) <= {0.0} and set(self.std) <= {1.0}):
            def per_channel(values):
                return list(values) * channels if len(values) == 1 else list(values)
            out.append(keras.layers.Normalization(
                mean=per_channel(self.mean), variance=[s * s for s in per_channel(self.std)],
                name="input_normalization"))
        return out

    def as_dict(self) -> dict:
        return {"input_range": list(self.input_range), "mean": list(self.mean),
                "std": list(self.std)}


def parse_range(text: str) -> tuple[float, float]:
    """``"0:255"`` -> (0.0, 255.0); ParameterError otherwise."""
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise ParameterError(f"--input-range {text!r} is not LOW:HIGH (e.g. 0:255)") from None
    return low, high


def parse_channels(text: str, flag: str) -> tuple[float, ...]:
    """``"0.485,0.456,0.406"`` -> a tuple of floats; ParameterError otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ParameterError(f"{flag} {text!r} is not a comma list of numbers") from None
    return values


# -- the graph -----------------------------------------------------------------------------------
def is_graph_model(model: Model) -> bool:
    """A Sequential or functional model (whose layers and graph are known); False for a
    subclassed model, whose ``call`` is Python code."""
    if isinstance(model, keras.Sequential):
        return True
    try:
        return "output_layers" in model.get_config()
    except (NotImplementedError, TypeError, AttributeError):
        return False


def output_layer(model: Model) -> Any:
    """The layer that produces a graph model's single output."""
    if isinstance(model, keras.Sequential):
        return model.layers[-1]
    spec = model.get_config()["output_layers"]
    if spec and isinstance(spec[0], list):
        if len(spec) != 1:
            raise ArtifactError(f"model {model.name!r} has {len(spec)} outputs; advbench needs "
                                "one (the class scores)")
        spec = spec[0]
    return model.get_layer(spec[0])


def call_graph(model: Model, x: Any, call: Callable | None = None) -> Any:
    """Run ``model``'s graph on the symbolic tensor ``x`` layer by layer, calling each layer
    through ``call(layer, *args, **kwargs)`` and nested graph models flattened into the
    same graph; returns the output tensor. The layers are shared, not copied."""
    call = call or (lambda layer, *args, **kwargs: layer(*args, **kwargs))

    def visit(layer, *args, **kwargs):
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            return call_graph(layer, args[0], call)
        return call(layer, *args, **kwargs)

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = visit(layer, x)
        return x
    last, outputs = output_layer(model), {}

    def recording(layer, *args, **kwargs):
        outputs[id(layer)] = visit(layer, *args, **kwargs)
        return outputs[id(layer)]

    # clone_model walks the graph in order; with the identity clone function it reuses the
    # layers, and its own returned model (on a re-created input) is not needed.
    keras.models.clone_model(model, input_tensors=x, clone_function=lambda layer: layer,
                             call_function=recording)
    return outputs[id(last)]


def _is_softmax(fn) -> bool:
    return getattr(fn, "__name__", "") == "softmax"


def softmax_kind(layer: Any) -> str | None:
    """How a layer applies a softmax: "layer" (a Softmax layer or Activation('softmax')),
    "activation" (another layer's ``activation="softmax"``), or None."""
    if isinstance(layer, keras.layers.Softmax):
        return "layer"
    if isinstance(layer, keras.layers.Activation):
        return "layer" if _is_softmax(layer.activation) else None
    return "activation" if _is_softmax(getattr(layer, "activation", None)) else None


def _without_activation(layer):
    """A copy of ``layer`` with a linear activation (weights to be set once it is built)."""
    return type(layer).from_config({**layer.get_config(), "activation": "linear",
                                    "name": f"{layer.name}_logits"})


# -- adapt -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Adapted:
    """``adapt``'s result: the model in advbench's convention and what was done to it."""

    model: keras.Model
    outputs: str  # "logits", "softmax removed", "log of probabilities"
    notes: list[str]


def adapt(model: Model, image_shape: Sequence[int], num_classes: int, *, preprocessing: Preprocessing | None = None,
          outputs: str = "auto", probe: np.ndarray | None = None, name: str = "model",
          front: list | None = None) -> Adapted:
    """``model`` as advbench uses it: [0, 1] NHWC images of ``image_shape`` in, logits out.

    Args:
        model: a Keras model (graph or subclassed; a SavedModel's TFSMLayer wrapper).
        image_shape: (H, W, C) of the data's images.
        num_classes: the data's number of classes; the model must output that many scores.
        preprocessing: the model's expected input (default: [0, 1] as is).
        outputs: "auto" (a final softmax is removed; outputs that still look like
            probabilities are refused), "logits" (taken as they are) or "probabilities"
            (their log is taken, unless a final softmax was removed).
        probe: images in [0, 1] to check the outputs on (default: 16 seeded uniform ones).
        front: layers applied to the [0, 1] images first (a defense's input layer).

    Raises ArtifactError when the shapes do not fit or the outputs look like probabilities,
    ParameterError for bad options.
    """
    preprocessing = preprocessing or Preprocessing()
    if outputs not in OUTPUTS:
        raise ParameterError(f"--outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
    image_shape = tuple(int(d) for d in image_shape)
    preprocessing.check(image_shape[-1])
    notes: list[str] = []
    expected = _input_shape(model, name)
    inputs = keras.Input(shape=image_shape, name="image")
    x = inputs
    for layer in front or []:
        x = layer(x)
    x = _fit_layout(x, image_shape, expected, name, notes)
    if not preprocessing.identity:
        for layer in preprocessing.layers(image_shape[-1]):
            x = layer(x)
        notes.append(f"{name}: inputs mapped from [0, 1] to the model's "
                     f"{preprocessing.input_range[0]:g}..{preprocessing.input_range[1]:g}"
                     + ("" if set(preprocessing.mean) <= {0.0} and set(preprocessing.std) <= {1.0}
                        else f", then (x - {list(preprocessing.mean)}) / {list(preprocessing.std)}"))
    graph = is_graph_model(model)
    removed = False
    if graph:
        last = output_layer_deep(model)
        kind = softmax_kind(last)
        replaced = {}

        def call(layer, *args, **kwargs):
            if layer is not last or kind is None:
                return layer(*args, **kwargs)
            if kind == "layer":
                return args[0]
            replaced["layer"] = copy = _without_activation(layer)
            out = copy(*args, **kwargs)
            copy.set_weights(layer.get_weights())
            return out

        y = call_graph(model, x, call)
        removed = kind is not None
        if removed:
            notes.append(f"{name}: its final softmax ({last.name!r}) is removed: advbench attacks "
                         "the logits")
    else:
        y = model(x)
        notes.append(f"{name}: a subclassed model (or SavedModel): attacks use TensorFlow's own "
                     "gradient")
    if len(y.shape) != 2:
        raise ArtifactError(f"{name} outputs shape {tuple(y.shape)}; advbench needs one axis "
                            "of class scores, (batch, classes)")
    if y.shape[-1] != num_classes:
        hint = (" (a sigmoid binary classifier? make its last layer Dense(2))"
                if y.shape[-1] == 1 else "")
        raise ArtifactError(f"{name} outputs {y.shape[-1]} class scores but the data has "
                            f"{num_classes} classes{hint}; pass the data it was trained on")
    how = "softmax removed" if removed else "logits"
    if outputs == "probabilities" and not removed:
        y = LogProbabilities(name="log_probabilities")(y)
        how = "log of probabilities"
        notes.append(f"{name}: outputs taken as probabilities (--outputs probabilities); "
                     "advbench attacks their log")
    adapted = keras.Model(inputs, y, name=name)
    if outputs == "auto" and not removed:
        if probe is None:
            probe = np.random.default_rng(0).uniform(0, 1, (16, *image_shape)).astype(np.float32)
        scores = np.asarray(adapted(probe[:64], training=False))
        if looks_like_probabilities(scores):
            raise ArtifactError(f"{name}'s outputs look like probabilities (non-negative, rows "
                                "summing to 1) but it has no final softmax layer to remove; "
                                "pass --outputs probabilities (advbench takes their log) or "
                                "--outputs logits (they are logits)")
    return Adapted(adapted, how, notes)


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """Rows non-negative and summing to 1 (to 1e-3) on every probe image."""
    return bool(len(scores) and scores.min() >= -1e-6
                and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def output_layer_deep(model: Model) -> Any:
    """The layer producing a graph model's output, looking into nested graph models."""
    layer = output_layer(model)
    while isinstance(layer, keras.Model) and is_graph_model(layer):
        layer = output_layer(layer)
    return layer


def _input_shape(model, name) -> tuple:
    """The model's per-image input shape; () when a subclassed model does not say."""
    try:
        shapes = model.input_shape
    except (AttributeError, ValueError):
        return ()
    if isinstance(shapes, list):
        if len(shapes) != 1:
            raise ArtifactError(f"{name} takes {len(shapes)} inputs; advbench needs one batch "
                                "of images")
        shapes = shapes[0]
    return tuple(shapes[1:])


def _fit_layout(inputs, image_shape, expected, name, notes):
    """The input tensor reshaped to the model's layout: (H, W) for a model without a channel
    axis, (C, H, W) for a channels-first model; ArtifactError when no layout fits."""
    def fits(shape):
        return len(shape) == len(expected) and all(e is None or e == s
                                                   for s, e in zip(shape, expected))
    if not expected or fits(image_shape):
        return inputs
    h, w, c = image_shape
    if c == 1 and fits((h, w)):
        notes.append(f"{name}: takes ({h}, {w}) images without a channel axis; advbench "
                     "reshapes its (H, W, 1) images")
        return keras.layers.Reshape((h, w), name="drop_channel_axis")(inputs)
    if fits((c, h, w)):
        notes.append(f"{name}: takes channels-first ({c}, {h}, {w}) images; advbench "
                     "transposes its NHWC images")
        return keras.layers.Permute((3, 1, 2), name="channels_first")(inputs)
    raise ArtifactError(f"{name} takes images of shape {expected} but the data's are "
                        f"{image_shape}; pass the data it was trained on (or resize the "
                        "data to its input)")


# -- preparing an architecture for training ------------------------------------------------------
def reinitialize(model: Model, *, keep_weights: bool = False) -> Model:
    """A copy of a graph model with fresh weights (its initializers, under Keras' seed), or
    with the same weights (``keep_weights``: fine-tuning); ``model`` is left untouched."""
    if not is_graph_model(model):
        raise ParameterError(f"{model.name} is a subclassed model; advbench trains Sequential "
                             "and functional models only")
    copy = keras.models.clone_model(model)
    if keep_weights:
        copy.set_weights(model.get_weights())
    return copy


def is_relu(layer: Any) -> bool:
    """A plain ReLU layer: no slope, no threshold, no cap."""
    if isinstance(layer, keras.layers.ReLU):
        return (layer.max_value is None and not float(layer.negative_slope)
                and not float(layer.threshold))
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") == "relu"
    return False


def convert_relu(model: Model, brelu_t: float = 1.0) -> tuple[Model, list[str]]:
    """Every ReLU of a graph model turned into BRELU(t) = min(max(x, 0), t): ReLU layers and
    Activation("relu") layers become ``ReLU(max_value=t)``; a layer with
    ``activation="relu"`` (Conv2D, Dense...) gets a linear activation followed by a new
    ``ReLU(max_value=t)``. Weights are kept; nothing else changes.

    Returns the new model (sharing no layer with ``model``) and one line per change.
    """
    if not brelu_t > 0:
        raise ParameterError(f"brelu t must be > 0, got {brelu_t}")
    if not is_graph_model(model):
        raise ParameterError(f"{model.name} is a subclassed model; --act brelu converts "
                             "Sequential and functional models only")
    changes: list[str] = []
    copies = {}

    def clone(layer):
        config = layer.get_config()
        if is_relu(layer):
            changes.append(f"{layer.name}: {type(layer).__name__} relu -> BRELU(t={brelu_t:g})")
            return keras.layers.ReLU(max_value=brelu_t, name=layer.name)
        if getattr(getattr(layer, "activation", None), "__name__", "") == "relu" \
                and "activation" in config:
            changes.append(f"{layer.name}: activation relu -> linear + BRELU(t={brelu_t:g}) "
                           f"({layer.name}_brelu)")
            copies[layer.name] = True
            return type(layer).from_config({**config, "activation": "linear"})
        return type(layer).from_config(config)

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in copies:
            out = keras.layers.ReLU(max_value=brelu_t, name=f"{layer.name}_brelu")(out)
        return out

    source = model
    if isinstance(model, keras.Sequential) or any(
            isinstance(layer, keras.Model) for layer in model.layers):
        # clone_model's call_function needs one flat functional graph.
        inputs = keras.Input(shape=model.input_shape[1:], name="image")
        source = keras.Model(inputs, call_graph(model, inputs), name=model.name)
    converted = keras.models.clone_model(source, clone_function=clone, call_function=call)
    converted.set_weights(source.get_weights())
    return converted, changes
