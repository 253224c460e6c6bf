"""Putting a model into advbench's convention: float32 NHWC images in [0, 1] in, logits out.

``adapt`` builds one flat functional model (no nested models, so the attack twin of
``models.gradients`` sees every convolution) around the user's layers, which it shares
(same weights):

    image in [0, 1] -> [Reshape / Permute to the model's input layout]
                    -> [Rescaling, Normalization: the model's input range, mean, std: from
                        the flags, else read from the model's own first layers
                        (``read_input_scale``)]
                    -> the model's own layers -> [its final softmax removed]
                    -> [LogProbabilities, when told the outputs are probabilities]

``convert_relu`` and ``reinitialize`` prepare a user's architecture for ``train --model``:
every ReLU turned into BRELU (Zantedeschi et al. 2017, Section 3: f_t(x) = min(max(x, 0), t))
and fresh weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import keras
import numpy as np

from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.types import Model
from advbench.models import OUTPUTS
from advbench.models.layers import LogProbabilities



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


def output_names(model: Model) -> list[str]:
    """The names of a graph model's outputs (the layers producing them), in order."""
    if isinstance(model, keras.Sequential):
        return [model.layers[-1].name]
    spec = model.get_config()["output_layers"]
    return [s[0] for s in spec] if spec and isinstance(spec[0], list) else [spec[0]]


def output_layer(model: Model) -> Any:
    """The layer that produces a graph model's single output."""
    names = output_names(model)
    if len(names) != 1:
        raise ArtifactError(f"model {model.name!r} has {len(names)} outputs "
                            f"({', '.join(names)}); pick the class scores with "
                            "--model-output NAME|INDEX")
    return model.get_layer(names[0])


def select_output(model: Model, choice: str | None, name: str) -> Model:
    """``model`` reduced to its output ``choice`` (a name of ``output_names`` or a 0-based
    index), sharing its layers; ``model`` itself when it has one output and no choice.

    Raises ArtifactError for several outputs and no choice (naming them), ParameterError for
    a choice that names no output, or one given for a model advbench cannot reduce.
    """
    if not is_graph_model(model):
        if choice is not None:
            raise ParameterError(f"--model-output picks an output of a Sequential or "
                                 f"functional model; {name} is not one")
        return model
    names = output_names(model)
    if choice is None:
        if len(names) > 1:
            raise ArtifactError(f"{name} has {len(names)} outputs ({', '.join(names)}); pick "
                                "the class scores with --model-output NAME|INDEX")
        return model
    index = int(choice) if choice.isdigit() else (names.index(choice) if choice in names
                                                  else -1)
    if not 0 <= index < len(names):
        raise ParameterError(f"--model-output {choice}: {name} has no such output; its "
                             f"outputs are {', '.join(f'{i}: {n}' for i, n in enumerate(names))}")
    if len(names) == 1:
        return model
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # as call_graph needs
    return keras.Model(inputs, model.outputs[index], name=model.name)


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


# -- the input scale a model reads itself -----------------------------------------------------
#: Layers that are the identity at inference and leave the pixel scale alone: passed over
#: when reading a model's first layers (Keras' Random* augmentation layers are too).
_PASS_THROUGH = ("InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                 "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout")


@dataclasses.dataclass(frozen=True)
class InputScale:
    """The pixel range a model's own first layers expect (``read_input_scale``)."""

    input_range: tuple[float, float]
    layers: str  # the layers it was read from, in words

    def as_dict(self) -> dict:
        return {"input_range": list(self.input_range), "read_from": self.layers}


def _history_names(value: Any) -> list[str]:
    """The layer names a functional config's ``inbound_nodes`` refer to (Keras 3's
    ``keras_history`` or Keras 2's ``[name, node, tensor, kwargs]`` lists)."""
    # get_config() holds tuples where the JSON of a saved file holds lists.
    if isinstance(value, dict):
        if isinstance(value.get("keras_history"), (list, tuple)):
            return [value["keras_history"][0]]
        return [n for v in value.values() for n in _history_names(v)]
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
            return [value[0]]
        return [n for v in value for n in _history_names(v)]
    return []


def first_layers(model: Model) -> Iterator[Any]:
    """The layers a graph model applies first to its input, in order, nested graph models
    (a Sequential inside a functional model) flattened, for as long as the path from the
    input is one chain; yields None where it branches (or the model has several inputs)."""
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            if isinstance(layer, keras.Model) and is_graph_model(layer):
                yield from first_layers(layer)
            else:
                yield layer
        return
    config = model.get_config()
    consumers: dict[str, list[str]] = {}
    for spec in config["layers"]:
        for source in set(_history_names(spec.get("inbound_nodes", []))):
            consumers.setdefault(source, []).append(spec["name"])
    inputs = _history_names(config["input_layers"])
    if len(inputs) != 1:
        yield None
        return
    current = inputs[0]
    while consumers.get(current):
        if len(consumers[current]) != 1:
            yield None
            return
        current = consumers[current][0]
        layer = model.get_layer(current)
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            yield from first_layers(layer)
        else:
            yield layer


def read_input_scale(model: Model) -> tuple[InputScale | None, str | None]:
    """The pixel range a graph model's own first layers expect, and why nothing was read.

    Read: the ``Rescaling`` layers at the very start of the model (after its input, nested
    models looked into, ``_PASS_THROUGH`` and ``Random*`` layers passed over), composed into
    one ``x * scale + offset``: offset 0 means they map [0, R] to [0, 1], offset -1 that they
    map [0, R] to [-1, 1] (keras.applications' ``include_preprocessing``), so R = 1 / scale
    or 2 / scale (rounded to an integer within 0.1%): ``Rescaling(1/255)`` and
    ``Rescaling(1/127.5, offset=-1)`` both give (0, 255). A ``Normalization`` first (no
    ``Rescaling`` before it) gives (0, 255) when a channel mean exceeds 1 (pixels in [0, 1]
    cannot average more), else (0, 1). Layers after the first other layer are not read.

    Returns (InputScale, None), or (None, a sentence saying why not) for a Rescaling that is
    per channel or has another offset, or (None, None) when the model starts with neither.
    """
    if not is_graph_model(model):
        return None, None
    scale, offset, read = 1.0, 0.0, []
    for layer in first_layers(model):
        if layer is None:
            break
        kind = type(layer).__name__
        if kind in _PASS_THROUGH or kind.startswith("Random"):
            continue
        if isinstance(layer, keras.layers.Rescaling):
            s, o = layer.scale, layer.offset
            if not all(isinstance(v, (int, float)) for v in (s, o)):
                return None, (f"its first layer {layer.name!r} is a per-channel Rescaling, "
                              "which advbench does not read: pass --input-range (and --mean, "
                              "--std) for what it expects")
            scale, offset = scale * s, offset * s + o
            read.append(f"Rescaling {layer.name!r} (scale {s:.6g}, offset {o:g})")
            continue
        if isinstance(layer, keras.layers.Normalization) and not read:
            mean = np.asarray(layer.mean if layer.built else layer.input_mean, dtype=float)
            high = 255.0 if mean.size and mean.max() > 1 else 1.0
            return InputScale((0.0, high), f"Normalization {layer.name!r} (mean up to "
                                           f"{mean.max():.4g})"), None
        break
    if not read:
        return None, None
    width = 1.0 if abs(offset) < 1e-6 else 2.0 if abs(offset + 1) < 1e-6 else None
    if width is None or not scale > 0:
        return None, (f"its first layers, {' then '.join(read)}, map pixels to another range than "
                      "[0, 1] or [-1, 1], which advbench does not read: pass --input-range "
                      "for what it expects")
    high = width / scale
    if abs(high - round(high)) <= 1e-3 * max(1.0, high):
        high = float(round(high))
    return InputScale((0.0, high), " then ".join(read)), None


# -- adapt -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Adapted:
    """``adapt``'s result: the model in advbench's convention and what was done to it."""

    model: keras.Model
    outputs: str  # "logits", "softmax removed", "log of probabilities"
    notes: list[str]
    preprocessing: Preprocessing = dataclasses.field(default_factory=lambda: Preprocessing())
    #: where the preprocessing came from: "model" (read), "flags" or "default" ([0, 1]), and
    #: what the model's first layers read (``InputScale.as_dict``, or None)
    input_scale: dict = dataclasses.field(default_factory=dict)


def adapt(model: Model, image_shape: Sequence[int], num_classes: int, *, preprocessing: Preprocessing | None = None,
          outputs: str = "auto", probe: np.ndarray | None = None, name: str = "model",
          front: list | None = None, model_output: str | None = None) -> Adapted:
    """``model`` as advbench uses it: [0, 1] NHWC images of ``image_shape`` in, logits out.

    Args:
        model: a Keras model (graph or subclassed; a SavedModel's TFSMLayer wrapper).
        image_shape: (H, W, C) of the data's images.
        num_classes: the data's number of classes; the model must output that many scores.
        preprocessing: the model's expected input (the flags); None: what its own first
            layers read (``read_input_scale``), else [0, 1] as is. Flags that disagree with
            what the model reads win, with a warning in the notes.
        outputs: "auto" (a final softmax is removed; outputs that still look like
            probabilities are refused), "logits" (taken as they are) or "probabilities"
            (their log is taken, unless a final softmax was removed).
        probe: images in [0, 1] to check the outputs on (default: 16 seeded uniform ones).
        front: layers applied to the [0, 1] images first (a defense's input layer).
        model_output: the class-score output of a model with several (``select_output``).

    Raises ArtifactError when the shapes do not fit or the outputs look like probabilities,
    ParameterError for bad options.
    """
    if outputs not in OUTPUTS:
        raise ParameterError(f"--outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
    model = select_output(model, model_output, name)
    notes: list[str] = []
    preprocessing, input_scale = _input_preprocessing(model, preprocessing, name, notes)
    image_shape = tuple(int(d) for d in image_shape)
    preprocessing.check(image_shape[-1])
    expected = _input_shape(model, name)
    inputs = keras.Input(shape=image_shape, name="image")
    x = inputs
    for layer in front or []:
        x = layer(x)
    x = _fit_layout(x, image_shape, expected, name, notes)
    if not preprocessing.identity:
        for layer in preprocessing.layers(image_shape[-1]):
            x = layer(x)
    if not preprocessing.identity and input_scale["source"] == "flags":
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
    return Adapted(adapted, how, notes, preprocessing, input_scale)


def _input_preprocessing(model: Model, preprocessing: Preprocessing | None, name: str,
                         notes: list[str]) -> tuple[Preprocessing, dict]:
    """The preprocessing ``adapt`` puts in front (the flags', else what the model reads) and
    its ``Adapted.input_scale`` record; what was read or overridden goes into ``notes``."""
    scale, unread = read_input_scale(model)
    if unread:
        notes.append(f"{name}: {unread}")
    record = {"source": "flags" if preprocessing is not None else "model" if scale
              else "default", "read": scale.as_dict() if scale else None}
    if preprocessing is None:
        if scale is None:
            return Preprocessing(), record
        low, high = scale.input_range
        notes.append(f"{name}: its first layers, {scale.layers}, take pixels in "
                     f"{low:g}..{high:g}: advbench feeds that range (attacks and eps stay in "
                     "[0, 1]; --input-range overrides)")
        return Preprocessing(input_range=scale.input_range), record
    if scale is not None and (preprocessing.input_range != scale.input_range
                              or not set(preprocessing.mean) <= {0.0}
                              or not set(preprocessing.std) <= {1.0}):
        low, high = scale.input_range
        given = f"--input-range {preprocessing.input_range[0]:g}:{preprocessing.input_range[1]:g}"
        if not (set(preprocessing.mean) <= {0.0} and set(preprocessing.std) <= {1.0}):
            given += f" --mean {list(preprocessing.mean)} --std {list(preprocessing.std)}"
        notes.append(f"Warning: {name}'s first layers, {scale.layers}, take pixels in "
                     f"{low:g}..{high:g}, but the flags say {given}: advbench follows the "
                     f"flags; drop them to feed {low:g}..{high:g}")
    return preprocessing, record


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
    if len(expected) == 1:
        from advbench.models.precheck import flat_input_message

        raise ArtifactError(flat_input_message(name, expected))
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


_NOT_ACTIVATIONS = ("linear", "relu", "softmax")


def other_activations(model: Model) -> dict[str, list[str]]:
    """The activations of a graph model that ``convert_relu`` leaves as they are, by kind
    (``"ReLU(max_value=6)"``, ``"hard_swish"``, ``"LeakyReLU"``...) -> layer names, nested
    models looked into: capped, leaky or thresholded ReLU layers, other activation layers
    (LeakyReLU, PReLU, ELU), ``Activation`` layers and ``activation=`` arguments other than
    relu, linear and softmax."""
    found: dict[str, list[str]] = {}

    def fn_name(fn):
        return getattr(fn, "__name__", type(fn).__name__)

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for inner, names in other_activations(layer).items():
                found.setdefault(inner, []).extend(names)
            continue
        kind: str | None = None
        if isinstance(layer, keras.layers.ReLU) and not is_relu(layer):
            kind = "ReLU(" + ", ".join(
                f"{k}={float(v):g}" for k, v in (("max_value", layer.max_value),
                                                  ("negative_slope", layer.negative_slope),
                                                  ("threshold", layer.threshold))
                if v is not None and float(v)) + ")"
        elif type(layer).__name__ in ("LeakyReLU", "PReLU", "ELU"):
            kind = type(layer).__name__
        elif isinstance(layer, keras.layers.Activation):
            kind = None if fn_name(layer.activation) in _NOT_ACTIVATIONS \
                else fn_name(layer.activation)
        elif getattr(layer, "activation", None) is not None \
                and fn_name(layer.activation) not in _NOT_ACTIVATIONS:
            kind = fn_name(layer.activation)
        if kind:
            found.setdefault(kind, []).append(layer.name)
    return found


def describe_left(name: str, left: dict[str, list[str]], converted: int) -> str | None:
    """The one line ``train --act brelu`` prints about the activations it left, or None."""
    if not left:
        return None
    kinds = "; ".join(f"{len(layers)} {kind} ({', '.join(layers[:4])}"
                      f"{', ...' if len(layers) > 4 else ''})" for kind, layers in left.items())
    return (f"Warning: {name}: --act brelu turned {converted} ReLUs into BRELU and left "
            f"{sum(map(len, left.values()))} other activations as they are: {kinds}; BRELU "
            "bounds plain ReLUs only")


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
