"""The attack twin of a model: same logits, sub-pixel input gradients for strided convolutions
on few input channels, transposed ones for Dense layers (advbench.models.gradients)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from advbench.models.gradients import (SubpixelGradientConv2D, TransposedGradientDense,
                                       attack_model, dense_eligible, subpixel_eligible,
                                       subpixel_input_gradient)
from advbench.models.zoo import ARCHITECTURES, build_model

INPUT_SHAPES = {"cnn": (28, 28, 1), "resnet": (28, 28, 1), "cifar-cnn": (32, 32, 3),
                "mlp": (8, 8, 1)}


@pytest.mark.parametrize("input_hw, channels, kernel, strides, padding", [
    ((28, 28), 1, 8, (2, 2), "SAME"),    # the zoo's first layer
    ((14, 14), 64, 6, (2, 2), "VALID"),  # the CNN's second layer
    ((5, 5), 8, 5, (1, 1), "VALID"),
    ((15, 17), 3, 3, (2, 2), "SAME"),    # odd sizes, uneven SAME padding
    ((17, 16), 3, 5, (3, 3), "VALID"),   # input rows past the last tap
    ((12, 13), 2, 4, (2, 1), "SAME"),    # unequal strides
    ((11, 12), 1, 3, (1, 3), "VALID"),
    ((9, 9), 4, 1, (2, 2), "VALID"),     # 1x1 kernel, stride larger than the kernel
])
def test_subpixel_input_gradient_equals_conv2d_transpose(input_hw, channels, kernel, strides,
                                                          padding):
    rng = np.random.default_rng(0)
    x_shape = (3, *input_hw, channels)
    w = tf.constant(rng.normal(size=(kernel, kernel, channels, 7)), tf.float32)
    y = tf.nn.conv2d(tf.zeros(x_shape), w, strides, padding)
    dy = tf.constant(rng.normal(size=y.shape), tf.float32)
    expected = tf.nn.conv2d_transpose(dy, w, x_shape, strides, padding).numpy()
    got = subpixel_input_gradient(dy, w, input_hw, strides, padding).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def _input_gradient(model, x, labels):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, model(x, training=False))
    return tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("activation", ["relu", "brelu"])
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_twin_has_identical_logits_and_matching_gradients(architecture, activation):
    keras.utils.set_random_seed(0)
    shape = INPUT_SHAPES[architecture]
    model = build_model(architecture, shape, activation=activation)
    twin = attack_model(model)
    replaced = [layer.name for layer in model.layers
                if subpixel_eligible(layer) or dense_eligible(layer)]
    assert (twin is not model) == bool(replaced)
    assert sum(isinstance(layer, TransposedGradientDense) for layer in twin.layers) == sum(
        dense_eligible(layer) for layer in model.layers)
    assert attack_model(model) is twin  # built once per model
    x = tf.constant(np.random.default_rng(1).uniform(size=(16, *shape)), tf.float32)
    labels = tf.constant(np.arange(16) % 10, tf.int32)
    np.testing.assert_array_equal(twin(x, training=False).numpy(),
                                  model(x, training=False).numpy())
    expected = _input_gradient(model, x, labels)
    np.testing.assert_allclose(_input_gradient(twin, x, labels), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


def test_zoo_convolutions_that_qualify():
    cnn = build_model("cnn", (28, 28, 1))
    assert [layer.name for layer in cnn.layers if subpixel_eligible(layer)] == ["conv1"]
    # Stride 1 (CIFAR CNN) is never faster: left to TensorFlow.
    cifar = build_model("cifar-cnn", (32, 32, 3))
    assert not any(subpixel_eligible(layer) for layer in cifar.layers)


def test_twin_shares_variables_with_the_model():
    model = build_model("cnn", (28, 28, 1))
    twin = attack_model(model)
    x = tf.constant(np.random.default_rng(2).uniform(size=(4, 28, 28, 1)), tf.float32)
    conv1 = model.get_layer("conv1")
    conv1.kernel.assign(conv1.kernel * 3.0)  # a training step, say
    np.testing.assert_array_equal(twin(x).numpy(), model(x).numpy())
    assert len(twin.trainable_weights) == len(model.trainable_weights)


@pytest.mark.parametrize("use_bias, activation", [(True, None), (False, "relu")])
def test_twin_weight_gradients_match(use_bias, activation):
    """Training through the twin gives TensorFlow's kernel and bias gradients."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3))
    hidden = keras.layers.Conv2D(5, 4, strides=2, padding="same", use_bias=use_bias,
                                 activation=activation)(inputs)
    hidden = keras.layers.Dense(400, use_bias=use_bias, activation=activation)(
        keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, keras.layers.Dense(200)(hidden))
    twin = attack_model(model)
    assert isinstance(twin.layers[1], SubpixelGradientConv2D)
    assert [type(layer) for layer in twin.layers[-2:]] == [TransposedGradientDense] * 2
    x = tf.constant(np.random.default_rng(4).uniform(size=(6, 12, 12, 3)), tf.float32)
    grads = []
    for m in (model, twin):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(x) ** 2)
        grads.append([g.numpy() for g in tape.gradient(loss, m.trainable_weights)])
    for got, expected in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_subclassed_model_keeps_its_own_gradients():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, strides=2)
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(keras.layers.Flatten()(self.conv(x)))

    model = Subclassed()
    model(tf.zeros((1, 9, 9, 1)))
    assert attack_model(model) is model


def test_models_are_freed_with_or_without_a_twin():
    import gc
    import weakref

    refs = []
    for architecture, shape in (("cnn", (28, 28, 1)), ("mlp", (8, 8, 1))):
        model = build_model(architecture, shape)
        attack_model(model)
        refs.append(weakref.ref(model))
        del model
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def test_mixed_precision_convolutions_keep_their_own_gradients():
    conv = keras.layers.Conv2D(8, 4, strides=2, dtype="mixed_float16")
    conv.build((None, 12, 12, 1))
    assert not subpixel_eligible(conv)
    plain = keras.layers.Conv2D(8, 4, strides=2)
    plain.build((None, 12, 12, 1))
    assert subpixel_eligible(plain)


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_dense_input_gradient_equals_tensorflows(batch):
    """(kernel @ dy^T)^T against TensorFlow's dy @ kernel^T, on the CIFAR-10 CNN's largest
    layer's shape."""
    keras.utils.set_random_seed(5)
    dense = keras.layers.Dense(500, activation="relu")
    dense.build((None, 3136))
    layer = TransposedGradientDense(dense)
    x = tf.constant(np.random.default_rng(6).normal(size=(batch, 3136)), tf.float32)
    gradients = []
    for f in (dense, layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
            loss = tf.reduce_sum(y * tf.range(500, dtype=tf.float32))
        gradients.append(tape.gradient(loss, x).numpy())
        np.testing.assert_array_equal(y.numpy(), dense(x).numpy())
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=1e-5,
                               atol=1e-6 * np.abs(gradients[0]).max())


def test_dense_on_sequences_keeps_its_own_gradient():
    """A Dense layer on (batch, steps, features) is keras' tensordot: the layer runs as is."""
    dense = keras.layers.Dense(300)
    dense.build((None, 4, 300))
    x = tf.constant(np.random.default_rng(7).normal(size=(2, 4, 300)), tf.float32)
    np.testing.assert_array_equal(TransposedGradientDense(dense)(x).numpy(), dense(x).numpy())


def test_quantized_lora_and_mixed_precision_dense_keep_their_own_gradients():
    mixed = keras.layers.Dense(256, dtype="mixed_float16")
    mixed.build((None, 256))
    lora = keras.layers.Dense(256)
    lora.build((None, 256))
    lora.enable_lora(2)
    quantized = keras.layers.Dense(256)
    quantized.build((None, 256))
    quantized.quantize("int8")
    small = keras.layers.Dense(255)
    small.build((None, 256))  # one entry short of DENSE_MIN_KERNEL_ENTRIES
    plain = keras.layers.Dense(256)
    assert not dense_eligible(plain)  # not built
    plain.build((None, 256))
    assert [dense_eligible(layer) for layer in (mixed, lora, quantized, small, plain)] == [
        False, False, False, False, True]
    assert not dense_eligible(keras.layers.Conv2D(4, 3))
