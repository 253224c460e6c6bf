"""Faster input gradients for attacks: a twin of a model with the same logits whose strided
convolutions on few input channels back-propagate to their input by a sub-pixel convolution.

Every gradient attack differentiates the logits with respect to the image, so its backward
pass ends in the first convolution's input gradient (TensorFlow's Conv2DBackpropInput). On
the CPU (oneDNN) that op is slow when the convolution is strided and its input has one to
four channels, which is exactly the first layer of an image model: for the paper's MNIST CNN
(8x8 kernel, stride 2, 1 -> 64 channels) it took 63 us per image at batch 250, five times
the layer's forward pass and half of the whole backward pass.

The same gradient is one stride-1 convolution of the (padded) output gradient with a
rearranged kernel, followed by a depth-to-space interleave (the "sub-pixel" form of a transposed
convolution): each of the stride x stride phases of the input grid receives a correlation
of the output gradient with the kernel taps of that phase. That took 21 us for the same
layer. Only the summation order differs from Conv2DBackpropInput (relative differences
~1e-7); the forward pass is the layer's own, so logits and predictions are bit-identical.

Dense layers get a cheaper input gradient too. Keras stores a Dense kernel as (inputs,
outputs), so TensorFlow's gradient of ``x @ kernel`` is ``dy @ kernel^T``, a MatMul with
``transpose_b``, which this CPU build runs by reading the kernel against its layout.
``(kernel @ dy^T)^T`` is the same products and transposes only the small matrices: for the
CIFAR-10 CNN's 3136 x 500 layer, 1.65x faster at batch 3, 1.27x at 64 and 1.12x at 250, and
bit-identical there (``bench/bench_gradients.py``, 1 thread); elsewhere the sums may round
differently (float32). Small kernels gain nothing (``DENSE_MIN_KERNEL_ENTRIES``). This
matters where attacks spend their steps on few samples (APGD-T, FAB-T and Square on the
images APGD-CE leaves).

``attack_model(model)`` returns the twin, sharing the model's variables (weights updated
during training are seen at once), or the model itself where nothing qualifies or a GPU is
present (cuDNN's own backward is fast there).
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from advbench.core.types import Model

#: Convolutions whose input has at most this many channels get the sub-pixel input gradient
#: when strided: with oneDNN's kernels (advbench's default, advbench/__init__.py) measured
#: 1.3-3.3x faster on 1 and 3 channels, slower at 8 channels and at stride 1, and 1.1x on the
#: MNIST CNN's 64-channel conv2, where replacing it made the whole step slower
#: (bench/bench_gradients.py and docs/performance.md, "TensorFlow's oneDNN kernels"; batch
#: 250, 1 thread). On Eigen's kernels the sub-pixel form loses on 1 channel.
SUBPIXEL_MAX_INPUT_CHANNELS = 4


def _same_padding_before(size: int, kernel: int, stride: int) -> int:
    """Rows TensorFlow's "SAME" padding adds before the input (the smaller half)."""
    out = -(-size // stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


def subpixel_input_gradient(dy: tf.Tensor, kernel: tf.Tensor, input_hw: tuple[int, int],
                            strides: tuple[int, int], padding: str) -> tf.Tensor:
    """The gradient of ``conv2d(x, kernel, strides, padding)`` with respect to x (NHWC).

    Args:
        dy: (batch, out_h, out_w, c_out), the gradient at the convolution's output.
        kernel: (k_h, k_w, c_in, c_out).
        input_hw: x's (height, width).
        strides: (s_h, s_w).
        padding: "SAME" or "VALID" (TensorFlow's meaning).

    Returns (batch, height, width, c_in), what ``tf.nn.conv2d_transpose`` would return.

    With the kernel zero-padded to a multiple of the stride, tap ki = s * a + r reaches input
    row s * (i + a) + r from output row i. For a fixed phase r the input rows u = i + a form
    a full correlation of dy with the taps of that phase (flipped): one stride-1 "VALID"
    convolution of dy padded by K' - 1 (K' = ceil(k / s)) gives all phases at once as
    channels, and a reshape and transpose interleave them into the input grid.
    """
    k_h, k_w, c_in, c_out = kernel.shape
    s_h, s_w = strides
    height, width = input_hw
    taps_h, taps_w = -(-k_h // s_h), -(-k_w // s_w)
    padded = tf.pad(kernel, [[0, taps_h * s_h - k_h], [0, taps_w * s_w - k_w], [0, 0], [0, 0]])
    phases = tf.reshape(padded, [taps_h, s_h, taps_w, s_w, c_in, c_out])
    phases = tf.reverse(phases, [0, 2])  # correlation with the flipped taps
    # (a, b, c_out, r, t, c_in): output channels ordered as the interleave reads them.
    phases = tf.transpose(phases, [0, 2, 5, 1, 3, 4])
    phases = tf.reshape(phases, [taps_h, taps_w, c_out, s_h * s_w * c_in])
    dy = tf.pad(dy, [[0, 0], [taps_h - 1, taps_h - 1], [taps_w - 1, taps_w - 1], [0, 0]])
    grid = tf.nn.conv2d(dy, phases, 1, "VALID")
    # Interleave the phases: channel (r, t, c_in) of grid cell (u, v) is input (s_h u + r,
    # s_w v + t, c_in).
    rows, cols = grid.shape[1], grid.shape[2]
    grid = tf.reshape(grid, [-1, rows, cols, s_h, s_w, c_in])
    grid = tf.reshape(tf.transpose(grid, [0, 1, 3, 2, 4, 5]), [-1, rows * s_h, cols * s_w, c_in])
    top = _same_padding_before(height, k_h, s_h) if padding == "SAME" else 0
    left = _same_padding_before(width, k_w, s_w) if padding == "SAME" else 0
    # Input rows past the last tap never reached an output: their gradient is 0.
    missing_h = max(0, top + height - rows * s_h)
    missing_w = max(0, left + width - cols * s_w)
    if missing_h or missing_w:
        grid = tf.pad(grid, [[0, 0], [0, missing_h], [0, missing_w], [0, 0]])
    return grid[:, top:top + height, left:left + width, :]


def subpixel_eligible(layer: keras.layers.Layer) -> bool:
    """A plain strided NHWC float32 Conv2D on few input channels, no dilation, groups or
    quantization (their forward passes are not the plain convolution this layer re-runs)."""
    if type(layer) is not keras.layers.Conv2D:
        return False
    if layer.compute_dtype != "float32" or getattr(layer, "quantization_mode", None):
        return False
    return (layer.built
            and layer.data_format == "channels_last"
            and tuple(layer.dilation_rate) == (1, 1)
            and layer.groups == 1
            and layer.padding in ("same", "valid")
            and max(layer.strides) > 1
            and layer.kernel.shape[2] <= SUBPIXEL_MAX_INPUT_CHANNELS)


class SubpixelGradientConv2D(keras.layers.Layer):
    """Runs a Conv2D layer's own forward pass on its variables; back-propagates to the input
    with ``subpixel_input_gradient`` (kernel and bias gradients as TensorFlow computes them).
    Never saved: it lives only in ``attack_model``'s twin."""

    def __init__(self, conv: keras.layers.Conv2D, **kwargs: Any):
        super().__init__(name=f"{conv.name}_subpixel_gradient", **kwargs)
        self.conv = conv

    def call(self, x: tf.Tensor) -> tf.Tensor:
        conv = self.conv
        strides = tuple(conv.strides)
        padding = conv.padding.upper()
        input_hw = tuple(x.shape[1:3])

        @tf.custom_gradient
        def convolve(x, kernel, *bias):
            # The layer's own ops (keras' conv, then the bias add), so the logits match bits.
            y = conv.convolution_op(x, kernel)
            if bias:
                y = keras.ops.add(y, keras.ops.reshape(bias[0], (1, 1, 1, -1)))

            def gradient(dy):
                dx = subpixel_input_gradient(dy, kernel, input_hw, strides, padding)
                dkernel = tf.compat.v1.nn.conv2d_backprop_filter(
                    x, tf.shape(kernel), dy, [1, *strides, 1], padding)
                return (dx, dkernel, *[tf.reduce_sum(dy, axis=[0, 1, 2]) for _ in bias])
            return y, gradient

        bias = [tf.convert_to_tensor(conv.bias)] if conv.use_bias else []
        y = convolve(x, tf.convert_to_tensor(conv.kernel), *bias)
        return conv.activation(y) if conv.activation is not None else y


#: Dense kernels with fewer entries keep TensorFlow's gradient: for 500 x 10 the transposed
#: form measured 0.8-0.9x, for 784 x 256 1.1-2.2x (bench/bench_gradients.py, 1 thread).
DENSE_MIN_KERNEL_ENTRIES = 2**16


def dense_eligible(layer: keras.layers.Layer) -> bool:
    """A plain float32 Dense layer with at least ``DENSE_MIN_KERNEL_ENTRIES`` kernel entries:
    no quantization or LoRA (whose ``kernel`` is not the variable this layer's forward pass
    reads)."""
    if type(layer) is not keras.layers.Dense:
        return False
    if layer.compute_dtype != "float32" or getattr(layer, "quantization_mode", None):
        return False
    return (layer.built and not getattr(layer, "lora_enabled", False)
            and int(np.prod(layer.kernel.shape)) >= DENSE_MIN_KERNEL_ENTRIES)


class TransposedGradientDense(keras.layers.Layer):
    """Runs a Dense layer's own forward pass on its variables; back-propagates a 2-D input's
    gradient as ``(kernel @ dy^T)^T`` instead of ``dy @ kernel^T`` (the module docstring says
    why; kernel and bias gradients as TensorFlow computes them). Inputs of higher rank go
    through the layer itself. Never saved: it lives only in ``attack_model``'s twin."""

    def __init__(self, dense: keras.layers.Dense, **kwargs: Any):
        super().__init__(name=f"{dense.name}_transposed_gradient", **kwargs)
        self.dense = dense

    def call(self, x: tf.Tensor) -> tf.Tensor:
        dense = self.dense
        if x.shape.rank != 2:
            return dense(x)

        @tf.custom_gradient
        def affine(x, kernel, *bias):
            # The layer's own ops (keras' matmul, then the bias add), so the logits match bits.
            y = keras.ops.matmul(x, kernel)
            if bias:
                y = keras.ops.add(y, bias[0])

            def gradient(dy):
                dx = tf.transpose(tf.matmul(kernel, dy, transpose_b=True))
                dkernel = tf.matmul(x, dy, transpose_a=True)
                return (dx, dkernel, *[tf.reduce_sum(dy, axis=0) for _ in bias])
            return y, gradient

        bias = [tf.convert_to_tensor(dense.bias)] if dense.use_bias else []
        y = affine(x, tf.convert_to_tensor(dense.kernel), *bias)
        return dense.activation(y) if dense.activation is not None else y


def twin_layer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """The twin's replacement for ``layer``, or None where the layer's own gradient stays."""
    if subpixel_eligible(layer):
        return SubpixelGradientConv2D(layer)
    if dense_eligible(layer):
        return TransposedGradientDense(layer)
    return None


_TWINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
# Cached for a model that is its own twin: a model as its own value would never be freed.
_ITSELF = object()


def attack_model(model: Model) -> Model:
    """The model to differentiate in attacks: ``model``'s twin with sub-pixel input gradients
    for its eligible convolutions and transposed ones for its Dense layers (``twin_layer``),
    sharing its layers and variables; ``model`` itself when no
    layer qualifies, when a GPU is visible, or when Keras cannot clone it (subclassed models).

    Built once per model. Logits are bit-identical to ``model``'s; input gradients agree up
    to float32 summation order.
    """
    cached = _TWINS.get(model)
    if cached is not None:
        return model if cached is _ITSELF else cached
    twin = model
    replaced = {id(layer): twin_layer(layer) for layer in getattr(model, "layers", [])}
    replaced = {key: layer for key, layer in replaced.items() if layer is not None}
    if replaced and not tf.config.list_physical_devices("GPU"):
        try:
            twin = keras.models.clone_model(
                model, clone_function=lambda layer: replaced.get(id(layer), layer))
        except (ValueError, TypeError, NotImplementedError):
            twin = model  # e.g. a subclassed model: keep TensorFlow's own gradients
    _TWINS[model] = _ITSELF if twin is model else twin
    return twin
