"""bench/torch_port.py: every zoo architecture, relu and brelu, ports to PyTorch with the
same logits (the reference comparisons of bench/bench_autoattack.py rest on it)."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from torch_port import _same_padding, check_logits, port_keras_model  # noqa: E402

from advbench.models import ARCHITECTURE_BUILDERS  # noqa: E402
from advbench.models.zoo import build_model  # noqa: E402


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURE_BUILDERS))
@pytest.mark.parametrize("activation", ["relu", "brelu"])
def test_every_zoo_architecture_ports_with_equal_logits(architecture, activation):
    shape = (32, 32, 3) if architecture == "cifar-cnn" else (28, 28, 1)
    keras.utils.set_random_seed(0)
    model = build_model(architecture, shape, activation=activation, brelu_t=0.5)
    # Non-square images would expose a swapped H/W; random images a wrong flatten order.
    x = np.random.default_rng(0).random((16, *shape), dtype=np.float32)
    assert check_logits(model, port_keras_model(model), x) <= 1e-4


def test_a_channels_first_flatten_is_caught():
    # The CIFAR CNN flattens 6x6x64 maps, where NCHW and NHWC orders differ (the MNIST CNN
    # flattens 1x1x128, where they coincide).
    keras.utils.set_random_seed(0)
    model = build_model("cifar-cnn", (32, 32, 3))
    net = port_keras_model(model)
    net.steps = [(kind, inputs, output, (lambda x: x.reshape(len(x), -1)) if kind == "flatten"
                  else fn) for kind, inputs, output, fn in net.steps]
    x = np.random.default_rng(1).random((8, 32, 32, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="ported logits differ from Keras' by"):
        check_logits(model, net, x)


def test_unknown_layers_are_refused_by_name():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
    with pytest.raises(ValueError, match="layer 'bn' of type BatchNormalization is not ported"):
        port_keras_model(model)


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (28, 8, 2, (3, 3)), (27, 8, 2, (3, 4)), (5, 3, 1, (1, 1)), (4, 1, 1, (0, 0))])
def test_same_padding_puts_the_odd_pixel_after(size, kernel, stride, expected):
    assert _same_padding(size, kernel, stride) == expected
