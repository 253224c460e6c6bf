"""The Square Attack on the tiny prototype model and on a model with no gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import (PROTOTYPE_CLASSES, accuracy, behind, perturbation_size, prototype_images,
                      quantiser)

from advbench.attacks.apgd_ce import APGDCrossEntropy
from advbench.attacks.fgsm import FGSM
from advbench.attacks.pgd import PGD
from advbench.attacks.square import (Square, l2_init_tiles, l2_pattern, nested_rectangles,
                                     window_sides)
from advbench.core.errors import ParameterError

EPS = {"linf": 0.2, "l2": 1.0}


@pytest.fixture(scope="module")
def samples():
    return prototype_images(40, seed=5)


@pytest.fixture(scope="module")
def quantised_model(tiny_model):
    """The tiny model behind an input quantiser with no gradient."""
    return behind(tiny_model, quantiser())


def test_window_sides_follow_the_papers_schedule():
    sides = window_sides(5000, 0.8, 28, 28, "linf", rescale=False)
    # p = 0.8, halved after queries 10, 50, 200, 500, 1000, 2000 and 4000: side
    # round(sqrt(p * 784)).
    expected = {0: 25, 10: 25, 11: 18, 51: 13, 201: 9, 501: 6, 1001: 4, 2001: 3, 4001: 2}
    assert {i: int(sides[i]) for i in expected} == expected
    l2 = window_sides(5000, 0.8, 28, 28, "l2", rescale=False)
    assert np.all(l2 % 2 == 1) and l2.min() == 3
    stretched = window_sides(1000, 0.8, 28, 28, "linf", rescale=True)
    assert stretched[1] == 25 and stretched[2] == 18  # query 2 of 1000 counts as 20 of 10,000
    assert window_sides(10, 1.0, 6, 9, "linf", rescale=False).max() == 6


def test_l2_pattern_is_the_papers_shape():
    pattern = l2_pattern(5)
    assert abs(np.linalg.norm(pattern) - 1.0) < 1e-12
    assert np.all(pattern[:2] > 0) and np.all(pattern[2:] < 0)
    # Nested rectangles of half-size 0 and 1: the centre carries 1 + 1/4, the border 1/4.
    three = nested_rectangles(3, 3)
    np.testing.assert_allclose(three / three[0, 0], [[1, 1, 1], [1, 5, 1], [1, 1, 1]])
    tile, flat, transposed = l2_init_tiles(28, 28)
    assert tile.max() == 24 and (tile >= 0).sum() == 25 * 25
    np.testing.assert_allclose(flat[1:6, 1:6], l2_pattern(5).astype(np.float32))
    np.testing.assert_allclose(transposed[1:6, 1:6], l2_pattern(5).T.astype(np.float32))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_budget_holds_outputs_in_bounds_and_queries_counted(tiny_model, samples, norm):
    x, y = samples
    eps = EPS[norm]
    out = Square(eps=eps, norm=norm, n_queries=200, n_restarts=2)(tiny_model, x, y, seed=1)
    assert perturbation_size(x, out.x_adv, norm).max() <= eps
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    fooled = np.argmax(tiny_model(out.x_adv).numpy(), axis=1) != y
    queries = out.extras["queries"]
    assert fooled.any() and not fooled.all()
    # A fooled sample stopped at the query that fooled it; the others spent both runs.
    assert np.all(queries[~fooled] == 2 * 201)
    assert np.all(queries[fooled] < 2 * 201) and np.all(queries[fooled] >= 1)


def test_same_seed_same_result(tiny_model, samples):
    x, y = samples
    attack = Square(eps=0.1, n_queries=30)
    first = attack(tiny_model, x, y, seed=7).x_adv
    np.testing.assert_array_equal(first, attack(tiny_model, x, y, seed=7).x_adv)
    assert not np.array_equal(first, attack(tiny_model, x, y, seed=8).x_adv)


def test_a_sample_gets_the_same_result_whatever_runs_beside_it(tiny_model, samples):
    x, y = samples
    attack = Square(eps=0.2, norm="l2", n_queries=50)
    all_x, _, all_extras = attack.run_on(tiny_model, x, y, seed=3, ids=np.arange(len(x)),
                                         total=len(x))
    rows = np.arange(1, len(x), 4)
    some_x, _, some_extras = attack.run_on(tiny_model, x[rows], y[rows], seed=3, ids=rows,
                                           total=len(x))
    np.testing.assert_allclose(some_x, all_x[rows], atol=1e-6)
    np.testing.assert_array_equal(some_extras["queries"], all_extras["queries"][rows])


def test_misclassified_samples_cost_nothing(tiny_model, samples):
    x, y = samples
    out = Square(eps=0.2, n_queries=20)(tiny_model, x, (y + 1) % PROTOTYPE_CLASSES, seed=0)
    wrong = np.argmax(tiny_model(x).numpy(), axis=1) != (y + 1) % PROTOTYPE_CLASSES
    np.testing.assert_array_equal(out.x_adv[wrong], x[wrong])
    assert np.all(out.extras["queries"][wrong] == 0)


def test_square_succeeds_where_the_gradient_is_zero(quantised_model, samples):
    x, y = samples
    clean = accuracy(quantised_model, x, y)
    apgd = accuracy(quantised_model, APGDCrossEntropy(eps=0.3, n_iter=20)(
        quantised_model, x, y, seed=0).x_adv, y)
    square = accuracy(quantised_model, Square(eps=0.3, n_queries=300)(
        quantised_model, x, y, seed=0).x_adv, y)
    assert clean > 0.9 and apgd == clean
    # The gradient attacks see a zero gradient (not None): they run and change nothing.
    np.testing.assert_array_equal(FGSM(eps=0.3)(quantised_model, x, y).x_adv, x)
    pgd = PGD(eps=0.3, steps=5, random_start=False)(quantised_model, x, y, seed=0).x_adv
    np.testing.assert_array_equal(pgd, x)
    assert square < apgd - 0.3, (square, apgd)


def test_cross_entropy_score_also_works(tiny_model, samples):
    x, y = samples
    out = Square(eps=0.3, n_queries=100, loss="ce")(tiny_model, x, y, seed=0)
    assert accuracy(tiny_model, out.x_adv, y) < accuracy(tiny_model, x, y) - 0.2


@pytest.mark.parametrize("params, message", [
    ({"norm": "l0"}, "norm must be one of linf, l2, l1, got 'l0'"),
    ({"n_queries": 0}, "n_queries must be >= 1, got 0"),
    ({"p_init": 0.0}, "p_init must be > 0.0, got 0.0"),
    ({"p_init": 1.5}, "p_init must be <= 1.0, got 1.5"),
    ({"n_restarts": 0}, "n_restarts must be >= 1, got 0"),
    ({"loss": "dlr"}, "loss must be one of margin, ce, got 'dlr'"),
    ({"rescale_schedule": "yes"}, "rescale_schedule must be True or False, got 'yes'"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ParameterError, match=f"^{message}$"):
        Square(**params)


def test_images_only():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    # The API's input check (checks.check_images) refuses it before the attack runs.
    with pytest.raises(ParameterError, match=r"^x must have shape \(batch, height, width, "
                       r"channels\), got shape \(2, 5\); for one image pass image\[None\]$"):
        Square()(model, np.zeros((2, 5), np.float32), np.zeros(2))
