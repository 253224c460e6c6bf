"""The L1 threat model (Croce and Hein, "Mind the box", ICML 2021): the exact projection onto
the L1 ball intersected with [0, 1], l1-APGD's large-reps schedule, and which attacks take l1."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import accuracy, perturbation_size, prototype_images
from scipy.optimize import minimize

from advbench.attacks import make_attack
from advbench.attacks.apgd import largereps_schedule
from advbench.attacks.norms import NORMS, l1_box_projection
from advbench.core.errors import ParameterError


def brute_force(x: np.ndarray | None, delta: np.ndarray, eps: float):
    """(d, converged): argmin ||d - delta||_2 over ||d||_1 <= eps (and 0 <= x + d <= 1), by
    SLSQP on d = p - q, p, q >= 0: a generic solver that knows nothing of soft thresholds."""
    n = len(delta)
    low, high = (-x, 1 - x) if x is not None else (np.full(n, -1e9), np.full(n, 1e9))
    eye = np.eye(n)

    def d(z):
        return z[:n] - z[n:]

    constraints = [
        {"type": "ineq", "fun": lambda z: eps - z.sum(), "jac": lambda z: -np.ones(2 * n)},
        {"type": "ineq", "fun": lambda z: high - d(z), "jac": lambda z: np.hstack([-eye, eye])},
        {"type": "ineq", "fun": lambda z: d(z) - low, "jac": lambda z: np.hstack([eye, -eye])},
    ]
    result = minimize(lambda z: 0.5 * np.sum((d(z) - delta) ** 2), np.zeros(2 * n),
                      jac=lambda z: np.concatenate([d(z) - delta, delta - d(z)]),
                      constraints=constraints, bounds=[(0, None)] * (2 * n), method="SLSQP",
                      options={"ftol": 1e-14, "maxiter": 1000})
    return d(result.x), result.success


def project(x, delta, eps):
    return l1_box_projection(None if x is None else tf.constant(x[None], tf.float32),
                             tf.constant(delta[None], tf.float32), eps).numpy()[0]


@pytest.mark.parametrize("box", [True, False])
def test_projection_is_the_brute_force_minimiser(box):
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 9))
        x = rng.random(n)
        x[rng.random(n) < 0.3] = rng.choice([0.0, 1.0])  # pixels at the box's faces
        delta = rng.normal(size=n) * rng.choice([0.1, 1.0, 3.0])
        eps = float(rng.choice([0.05, 0.5, 1.0, 3.0]))
        ours = project(x if box else None, delta, eps).astype(np.float64)
        theirs, converged = brute_force(x if box else None, delta, eps)
        # Feasible, and no point the solver found is closer to delta, up to float32 (|d_i| =
        # |delta_i| - lambda rounds at delta's scale; the attacks hold the budget exactly
        # with norms.Norm.hold).
        assert np.abs(ours).sum() <= eps + 1e-6 * (1 + np.abs(delta).max())
        if box:
            assert (x + ours).min() >= -1e-7 and (x + ours).max() <= 1 + 1e-7
        best = np.sum((theirs - delta) ** 2)
        assert np.sum((ours - delta) ** 2) <= best * (1 + 1e-6) + 1e-9
        if converged:  # the minimiser is unique (a strictly convex objective)
            np.testing.assert_allclose(ours, theirs, atol=2e-6)


def test_projection_holds_the_budget_and_the_box_in_high_dimension():
    rng = np.random.default_rng(1)
    x = rng.random((20, 28, 28, 1)).astype(np.float32)
    x[x < 0.5] = 0.0  # MNIST-like: many pixels at 0
    delta = (rng.normal(size=x.shape) * rng.choice([0.01, 0.1, 1.0], (20, 1, 1, 1)))
    for eps in (0.5, 10.0, 30.0):
        out = l1_box_projection(tf.constant(x), tf.constant(delta, tf.float32), eps).numpy()
        size = np.abs(out.astype(np.float64)).reshape(20, -1).sum(axis=1)
        assert size.max() <= eps * (1 + 1e-5)
        assert (x + out).min() >= -1e-7 and (x + out).max() <= 1 + 1e-7
        # Inside already: unchanged (a second projection is the identity).
        again = l1_box_projection(tf.constant(x), tf.constant(out), eps).numpy()
        np.testing.assert_allclose(again, out, atol=1e-6)


def test_a_delta_inside_the_ball_is_only_clipped_to_the_box():
    x = np.array([0.9, 0.1, 0.5])
    np.testing.assert_allclose(project(x, np.array([0.3, -0.3, 0.1]), 5.0), [0.1, -0.1, 0.1],
                               atol=1e-7)
    np.testing.assert_allclose(project(x, np.zeros(3), 0.0), np.zeros(3))


def test_large_reps_schedule_is_the_authors():
    assert largereps_schedule(100) == [(3.0, 30), (2.0, 30), (1.0, 40)]
    assert largereps_schedule(10) == [(3.0, 3), (2.0, 3), (1.0, 4)]
    assert largereps_schedule(1) == [(3.0, 1), (2.0, 1), (1.0, 0)]


def test_l1_norm_steps_and_random_starts():
    ball = NORMS["l1"]
    grad = tf.constant([[[[0.5], [-2.0]], [[2.0], [0.1]]]])
    np.testing.assert_allclose(ball.normalise(grad).numpy().ravel(), [0, -0.5, 0.5, 0])
    x = tf.fill([50, 4, 4, 1], 0.5)
    delta = ball.random_delta(x, 1.5, tf.constant([3, 4], tf.int64)).numpy()
    size = np.abs(delta).reshape(50, -1).sum(axis=1)
    assert size.max() <= 1.5 + 1e-5 and size.min() > 0.5  # uniform in 16 dims: near the edge


# AutoAttack L1 at eps 0: 11 s on an idle core; test_attacks checks eps 0 for autoattack.
@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t",
                                  pytest.param("autoattack", marks=pytest.mark.slow)])
def test_eps_zero_returns_the_input(tiny_model, name):
    x, y = prototype_images(12, seed=3)
    params = {"n_iter": 4, "n_target_classes": 2} if name != "apgd-ce" else {"n_iter": 4}
    if name == "autoattack":
        params["n_queries"] = 20
    out = make_attack(name, eps=0.0, norm="l1", **params)(tiny_model, x, y, seed=0)
    np.testing.assert_array_equal(out.x_adv, x)


def test_autoattack_l1_standard_holds_the_budget_and_beats_clean(tiny_model):
    x, y = prototype_images(40, seed=6)
    attack = make_attack("autoattack", eps=3.0, norm="l1", n_iter=10, n_target_classes=2)
    assert [a.use_largereps for a in attack.attacks[:2]] == [True, True]
    out = attack(tiny_model, x, y, seed=0)
    assert perturbation_size(x, out.x_adv, "l1").max() <= 3.0
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    assert accuracy(tiny_model, out.x_adv, y) < accuracy(tiny_model, x, y) - 0.2


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_attacks_without_l1_refuse_it(name):
    # Their declared norms (GRADIENT_NORMS) refuse it; the command line adds where l1 goes.
    with pytest.raises(ParameterError, match="^norm must be one of linf, l2, got 'l1'$"):
        make_attack(name, norm="l1")


def test_square_l1_patterns_are_the_authors():
    """Nested rectangles weighted 1/(k+1)^4, halves of opposite sign, unit L1 norm: the
    authors' ``eta`` (its values for side 5, from their square.py)."""
    from advbench.attacks.square import l2_pattern

    pattern = l2_pattern(5, "l1")
    assert np.abs(pattern).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(pattern[:2], [[0.0041, 0.0250, 0.0250, 0.0250, 0.0041],
                                             [0.0041, 0.0250, 0.3587, 0.0250, 0.0041]],
                               atol=6e-5)
    np.testing.assert_allclose(pattern[3], [-0.0035, -0.0214, -0.3075, -0.0214, -0.0035],
                               atol=6e-5)


def test_square_l1_holds_the_budget_and_fools(tiny_model):
    x, y = prototype_images(40, seed=7)
    out = make_attack("square", eps=6.0, norm="l1", n_queries=300)(tiny_model, x, y, seed=0)
    assert perturbation_size(x, out.x_adv, "l1").max() <= 6.0
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    assert accuracy(tiny_model, out.x_adv, y) < accuracy(tiny_model, x, y) - 0.2
