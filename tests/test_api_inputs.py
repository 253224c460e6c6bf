"""The Python API checks what the CLI checks (issue 14): every attack of the registry and
every public metric refuses bad images and labels with one line that names the fix."""

from __future__ import annotations

import re

import numpy as np
import pytest

from advbench.attacks import ATTACKS, make_attack
from advbench.core.errors import ParameterError
from advbench.run import metrics

from conftest import PROTOTYPE_SHAPE, prototype_images


def _x(count: int = 2) -> np.ndarray:
    return prototype_images(count, seed=3)[0]


def _with(value, index, array=None):
    array = _x() if array is None else array
    array = array.copy()
    array.flat[index] = value
    return array


Y = np.array([0, 1])
HEIGHT, WIDTH, CHANNELS = PROTOTYPE_SHAPE

# (x, y, seed, the exact message)
BAD_INPUTS = [
    pytest.param(_with(255.0, 0, np.full((2,) + PROTOTYPE_SHAPE, 0.5, np.float32)), Y, 0,
                 "x must be in [0, 1], got values from 0.5 to 255; scale the images to [0, 1] "
                 "(8-bit pixels: divide by 255)", id="0-255 floats"),
    pytest.param(_with(-0.25, 3, np.full((2,) + PROTOTYPE_SHAPE, 0.5, np.float32)), Y, 0,
                 "x must be in [0, 1], got values from -0.25 to 0.5; scale the images to [0, 1] "
                 "(8-bit pixels: divide by 255)", id="negative"),
    pytest.param((_x() * 255).astype(np.uint8), Y, 0,
                 "x has dtype uint8; images must be floats in [0, 1]: for 8-bit pixels pass "
                 "x.astype('float32') / 255", id="uint8"),
    pytest.param(_x().astype(np.int64), Y, 0,
                 "x has dtype int64; images must be floats in [0, 1]: for 8-bit pixels pass "
                 "x.astype('float32') / 255", id="int64"),
    pytest.param(_with(np.nan, 5), Y, 0,
                 "x contains 1 NaN or infinite value(s); expected finite values in [0, 1]",
                 id="NaN"),
    pytest.param(_with(np.inf, 5), Y, 0,
                 "x contains 1 NaN or infinite value(s); expected finite values in [0, 1]",
                 id="inf"),
    pytest.param(_x()[..., 0], Y, 0,
                 f"x must have shape (batch, height, width, channels), got shape "
                 f"(2, {HEIGHT}, {WIDTH}); for one image pass image[None]", id="rank 3"),
    pytest.param(_x()[0], Y, 0,
                 f"x must have shape (batch, height, width, channels), got shape "
                 f"({HEIGHT}, {WIDTH}, {CHANNELS}); for one image pass image[None]",
                 id="one image"),
    pytest.param(_x()[:0], Y[:0], 0,
                 f"x is empty (shape (0, {HEIGHT}, {WIDTH}, {CHANNELS})); pass at least one "
                 "sample", id="empty"),
    pytest.param(_x(), np.eye(4)[Y], 0,
                 "y must be class indices of shape (n,), got shape (2, 4); for one-hot labels "
                 "pass y.argmax(axis=1)", id="one-hot"),
    pytest.param(_x(), Y[:, None], 0,
                 "y must have shape (n,), got shape (2, 1); pass y.ravel()", id="(n, 1)"),
    pytest.param(_x(), np.array([0.5, 1.0]), 0,
                 "y must be integer class indices, got dtype float64", id="fractional labels"),
    pytest.param(_x(), np.array([0, 4]), 0,
                 "y must hold class indices in [0, 4) for this model's 4 outputs, got values "
                 "from 0 to 4", id="label out of range"),
    pytest.param(_x(), np.array([0, 1, 2]), 0,
                 "x has 2 samples but y has 3; pass one label per image", id="lengths"),
    pytest.param(_x(), Y, -1, "seed must be >= 0, got -1", id="negative seed"),
    pytest.param(_x(), Y, 2 ** 32, "seed must be <= 4294967295, got 4294967296",
                 id="seed 2**32"),
]


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("x, y, seed, message", BAD_INPUTS)
def test_every_attack_refuses_bad_inputs(name, x, y, seed, message, tiny_model):
    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        make_attack(name)(tiny_model, x, y, seed=seed)


@pytest.mark.parametrize("name", ["fgsm", "deepfool"])
def test_float64_images_are_converted_not_refused(name, tiny_model):
    # float64 (numpy's default) in [0, 1] is taken as float32, the models' dtype.
    x, y = prototype_images(4, seed=3)
    attack = make_attack(name)
    np.testing.assert_array_equal(attack(tiny_model, x.astype(np.float64), y).x_adv,
                                  attack(tiny_model, x, y).x_adv)


# (call, exact message) over the public metrics.
METRIC_CALLS = [
    pytest.param(lambda: metrics.perturbation_norms(_x(), _x() * 255),
                 "x_adv must be in [0, 1], got values from 0 to 255; scale the images to "
                 "[0, 1] (8-bit pixels: divide by 255)", id="perturbation_norms 0-255"),
    pytest.param(lambda: metrics.perturbation_norms((_x() * 255).astype(np.uint8), _x()),
                 "x has dtype uint8; images must be floats in [0, 1]: for 8-bit pixels pass "
                 "x.astype('float32') / 255", id="perturbation_norms uint8"),
    pytest.param(lambda: metrics.empirical_robustness(_x(), _with(np.nan, 0), [True, True]),
                 "x_adv contains 1 NaN or infinite value(s); expected finite values in [0, 1]",
                 id="empirical_robustness NaN"),
    pytest.param(lambda: metrics.empirical_robustness(_x() + 1, _x(), [True, True]),
                 None, id="empirical_robustness 1-2"),
    pytest.param(lambda: metrics.nearest_training_distance(_x(), (_x() * 255).astype(np.uint8)),
                 "x_train has dtype uint8; images must be floats in [0, 1]: for 8-bit pixels "
                 "pass x_train.astype('float32') / 255", id="nearest_training_distance"),
    pytest.param(lambda: metrics.accuracy(np.array([0, 1]), Y[:, None]),
                 "labels must have shape (n,), got shape (2, 1); pass labels.ravel()",
                 id="accuracy (n, 1)"),
    pytest.param(lambda: metrics.attack_success(Y, Y, np.eye(2)),
                 "labels must be class indices of shape (n,), got shape (2, 2); for "
                 "one-hot labels pass labels.argmax(axis=1)", id="attack_success one-hot"),
]


@pytest.mark.parametrize("call, message", METRIC_CALLS)
def test_every_metric_refuses_bad_inputs(call, message):
    with pytest.raises(ParameterError) as error:
        call()
    if message is None:  # values depend on the random images; the form does not
        assert str(error.value).startswith("x must be in [0, 1], got values from 1")
        assert str(error.value).endswith("; scale the images to [0, 1] (8-bit pixels: "
                                         "divide by 255)")
    else:
        assert str(error.value) == message


def test_loss_sensitivity_refuses_0_255_images(tiny_model):
    with pytest.raises(ParameterError, match=r"^x has dtype uint8; images must be floats"):
        metrics.loss_sensitivity(tiny_model, (_x() * 255).astype(np.uint8), Y)
