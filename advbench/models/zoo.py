"""The model zoo: architecture builders keyed by CLI name, and zoo-name resolution.

Every model maps float32 NHWC images in [0, 1] to logits (softmax lives in the loss).
``activation="brelu"`` puts the bounded ReLU f_t(x) = min(max(x, 0), t) at every activation
of the network, the ResNet's included (the paper authors' code kept ReLU inside its ResNet).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from advbench.core.errors import ParameterError
from advbench.core.types import Model, PathLike, Tensor
from advbench.models import precheck, ACTIVATIONS, ARCHITECTURE_BUILDERS
from advbench.models.layers import FeatureSqueezing

if TYPE_CHECKING:
    from advbench.core.progress import Progress


def activation_layer(activation: str, brelu_t: float, name: str) -> keras.layers.Layer:
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    return keras.layers.ReLU(max_value=brelu_t, name=name)


def _act(x, activation, brelu_t, index):
    return activation_layer(activation, brelu_t, f"act{index}")(x)


def build_cnn(inputs: Tensor, num_classes: int, activation: str, brelu_t: float) -> Tensor:
    """The paper's CNN (CleverHans ModelBasicCNN): 28 -> 14 -> 5 -> 1 on MNIST."""
    x = keras.layers.Conv2D(64, 8, strides=2, padding="same", name="conv1")(inputs)
    x = _act(x, activation, brelu_t, 1)
    x = keras.layers.Conv2D(128, 6, strides=2, padding="valid", name="conv2")(x)
    x = _act(x, activation, brelu_t, 2)
    x = keras.layers.Conv2D(128, 5, strides=1, padding="valid", name="conv3")(x)
    x = _act(x, activation, brelu_t, 3)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def build_resnet(inputs: Tensor, num_classes: int, activation: str,
                 brelu_t: float) -> Tensor:
    """The paper's ResNet: two strided convolutions, one bottleneck identity block, 3x3 max
    pooling, dense logits."""
    x = keras.layers.Conv2D(64, 8, strides=2, padding="same", name="conv1")(inputs)
    x = _act(x, activation, brelu_t, 1)
    x = keras.layers.Conv2D(128, 6, strides=2, padding="valid", name="conv2")(x)
    shortcut = _act(x, activation, brelu_t, 2)
    x = keras.layers.Conv2D(64, 1, name="block_conv1")(shortcut)
    x = _act(x, activation, brelu_t, 3)
    x = keras.layers.Conv2D(64, 3, padding="same", name="block_conv2")(x)
    x = _act(x, activation, brelu_t, 4)
    x = keras.layers.Conv2D(128, 1, name="block_conv3")(x)
    x = keras.layers.Add(name="block_add")([x, shortcut])
    x = _act(x, activation, brelu_t, 5)
    x = keras.layers.MaxPooling2D(3, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def build_cifar_cnn(inputs: Tensor, num_classes: int, activation: str,
                    brelu_t: float) -> Tensor:
    """The paper authors' CIFAR-10 network (their CIFAR script)."""
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv1")(inputs)
    x = _act(x, activation, brelu_t, 1)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Dropout(0.5, name="drop1")(x)
    x = keras.layers.Conv2D(64, 3, padding="valid", name="conv2")(x)
    x = _act(x, activation, brelu_t, 2)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Dropout(0.5, name="drop2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(500, name="dense1")(x)
    x = _act(x, activation, brelu_t, 3)
    x = keras.layers.Dropout(0.5, name="drop3")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def build_mlp(inputs: Tensor, num_classes: int, activation: str, brelu_t: float,
              hidden: int = 64) -> Tensor:
    """Two dense hidden layers: the paper's toy-experiment network (Figure 2)."""
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(hidden, name="dense1")(x)
    x = _act(x, activation, brelu_t, 1)
    x = keras.layers.Dense(hidden, name="dense2")(x)
    x = _act(x, activation, brelu_t, 2)
    return keras.layers.Dense(num_classes, name="logits")(x)


# The builders by --model name; the names live in advbench.models (__init__), without TensorFlow.
ARCHITECTURES: dict[str, Callable] = {name: globals()[builder]
                                      for name, builder in ARCHITECTURE_BUILDERS.items()}


def build_model(architecture: str, input_shape: Sequence[int], num_classes: int = 10, *,
                activation: str = "relu", brelu_t: float = 1.0,
                squeeze_bits: int | None = None) -> keras.Model:
    """A fresh, uncompiled Keras model giving logits.

    Args:
        architecture: a key of ``ARCHITECTURES``.
        input_shape: (H, W, C).
        activation: "relu" or "brelu" (bounded ReLU with threshold ``brelu_t`` > 0).
        squeeze_bits: if set, a FeatureSqueezing layer at the input (identity gradient).
    """
    if architecture not in ARCHITECTURES:
        raise ParameterError(f"unknown architecture {architecture!r}; choose one of: "
                             f"{', '.join(sorted(ARCHITECTURES))}")
    if activation not in ACTIVATIONS:
        raise ParameterError(f"unknown activation {activation!r}; choose relu or brelu")
    if not brelu_t > 0:
        raise ParameterError(f"brelu t must be > 0, got {brelu_t}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if squeeze_bits is not None:
        x = FeatureSqueezing(bit_depth=squeeze_bits, name="feature_squeezing")(x)
    outputs = ARCHITECTURES[architecture](x, num_classes, activation, brelu_t)
    return keras.Model(inputs, outputs, name=architecture)


# -- the zoo store --------------------------------------------------------------------------
def models_dir(path: PathLike | None = None) -> Path:
    """The zoo store: ``path``, else $ADVBENCH_MODELS, else ``models/``."""
    return precheck.models_dir(path)


def zoo_name(architecture: str, activation: str, defense: str) -> str:
    """The short name of a trained model: ``cnn``, ``cnn-brelu``, ``cnn-brelu-gda``..."""
    return precheck.zoo_name(architecture, activation, defense)


def resolve_model(ref: str, dataset: str | None = None,
                  directory: PathLike | None = None) -> Path:
    """A model path from a path (an artifact, a .keras / .h5 file, a SavedModel folder) or a
    zoo name (``cnn``, ``resnet-brelu``, ``cnn-brelu-gda``): ``precheck.resolve_model``,
    which needs no TensorFlow, so that the CLI says an unknown name before importing it.

    Zoo names resolve to ``<models dir>/<dataset>-<arch>-<act>-<defense>.h5``.
    """
    return precheck.resolve_model(ref, dataset, directory)


def zoo_path(dataset: str, architecture: str, activation: str, defense: str,
             directory: PathLike | None = None) -> Path:
    """Where `advbench train` stores a model by default."""
    return models_dir(directory) / f"{dataset}-{architecture}-{activation}-{defense}.h5"


# -- prediction -----------------------------------------------------------------------------
_FORWARD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def forward_function(model: Model) -> Callable[[Tensor], Tensor]:
    """The model's compiled inference pass (logits), built once per model."""
    fn = _FORWARD.get(model)
    if fn is None:
        # Any batch size, one trace: the batch dimension is left open.
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        _FORWARD[model] = fn
    return fn


def predict_logits(model: Model, x: np.ndarray, batch_size: int = 500, *,
                   progress: "Progress | None" = None, what: str = "clean pass") -> np.ndarray:
    """Logits for a whole array, batch by batch (never the whole set on the device at once).
    With ``progress`` (``advbench.core.progress.Progress``) the pass is a task named ``what``."""
    forward = forward_function(model)
    starts = range(0, len(x), batch_size)
    if progress is not None:
        progress.start(what, len(starts), unit="batches")
    out = []
    for i in starts:
        out.append(forward(tf.constant(x[i:i + batch_size])).numpy())
        if progress is not None:
            progress.advance(1, samples=len(out[-1]))
    if progress is not None:
        progress.close()
    if not out:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(out)


def predict_labels(model: Model, x: np.ndarray, batch_size: int = 500, *,
                   progress: "Progress | None" = None, what: str = "clean pass") -> np.ndarray:
    return predict_logits(model, x, batch_size, progress=progress, what=what).argmax(axis=1)
