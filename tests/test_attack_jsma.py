"""Tests of the JSMA attack (pairwise saliency map) on a tiny trained model."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from advbench.attacks import jsma as jsma_module
from advbench.attacks.jsma import JSMA, select_pair, select_target_pair
from advbench.core.errors import ParameterError

NUM_CLASSES = 4
SIDE = 8
N_FEATURES = SIDE * SIDE


def quadrant_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8x8 images whose class is the bright quadrant, on a dim noisy background."""
    x = rng.uniform(0.0, 0.3, size=(len(labels), SIDE, SIDE, 1))
    half = SIDE // 2
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        x[i, row * half:(row + 1) * half, col * half:(col + 1) * half, 0] += 0.5
    return np.clip(x, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, size=512)
    net = keras.Sequential([
        keras.Input((SIDE, SIDE, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(NUM_CLASSES),
    ])
    net.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(quadrant_images(labels, rng), labels, epochs=20, batch_size=64, verbose=0)
    return net


@pytest.fixture(scope="module")
def data(model):
    rng = np.random.default_rng(1)
    y = rng.integers(0, NUM_CLASSES, size=32)
    x = quadrant_images(y, rng)
    # Some pixels start at the bounds, so that the search domain matters from the start.
    x[:, 0, 0, 0] = 1.0
    x[:, -1, -1, 0] = 0.0
    return x, y


@pytest.fixture(scope="module")
def default_attack(model, data):
    """JSMA with the paper's defaults and random targets, seed 0 (shared: it is the slowest)."""
    x, y = data
    return JSMA()(model, x, y, seed=0)


def predict(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=1)


def changed_count(x_adv, x):
    return np.count_nonzero((x_adv != x).reshape(len(x), -1), axis=1)


# -- pair selection ---------------------------------------------------------------------------

def brute_force_pair(alpha, beta, first_allowed, second_allowed):
    """Papernot et al.'s Algorithm 3 over all pairs; returns (best score, {p, q}) or None."""
    n = len(alpha)
    best, best_pair = -np.inf, None
    for p in range(n):
        for q in range(n):
            if p == q or not (first_allowed[p] and second_allowed[q]):
                continue
            a, b = alpha[p] + alpha[q], beta[p] + beta[q]
            if a > 0 and b < 0 and -a * b > best:
                best, best_pair = -a * b, {p, q}
    return None if best_pair is None else (best, best_pair)


@pytest.mark.parametrize("kind", ["independent", "correlated", "anti-correlated", "ties"])
@pytest.mark.parametrize("restricted", [False, True])
@pytest.mark.parametrize("chunk_elements", [None, 7])
def test_pair_selection_equals_brute_force(kind, restricted, chunk_elements, monkeypatch):
    if chunk_elements is not None:
        # Tiny chunks force the row-chunked loop over the candidate matrix.
        monkeypatch.setattr(jsma_module, "PAIR_CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng([len(kind), int(restricted)])
    batch, n = 12, 40
    alpha = rng.normal(size=(batch, n))
    noise = rng.normal(size=(batch, n))
    beta = {"independent": noise,
            # beta close to alpha: c = -beta falls as alpha rises, so most points are Pareto.
            "correlated": alpha + 0.05 * noise,
            "anti-correlated": -alpha + 0.3 * noise,
            "ties": np.round(noise, 0)}[kind]
    if kind == "ties":
        alpha = np.round(alpha, 0)
    alpha, beta = alpha.astype(np.float32), beta.astype(np.float32)
    second = rng.random((batch, n)) < 0.8
    first = second & (rng.random((batch, n)) < 0.3) if restricted else second
    p, q, found = (t.numpy() for t in select_pair(
        tf.constant(alpha), tf.constant(beta), tf.constant(first), tf.constant(second)))
    for i in range(batch):
        expected = brute_force_pair(alpha[i], beta[i], first[i], second[i])
        assert found[i] == (expected is not None)
        if expected is None:
            continue
        assert first[i, p[i]] and second[i, q[i]] and p[i] != q[i]
        score = -(alpha[i, p[i]] + alpha[i, q[i]]) * (beta[i, p[i]] + beta[i, q[i]])
        assert score == pytest.approx(expected[0], rel=1e-6)
        if kind != "ties":
            assert {int(p[i]), int(q[i])} == expected[1]


def test_pair_selection_reports_no_admissible_pair():
    alpha = tf.constant([[1.0, 2.0, 3.0], [-1.0, -2.0, 0.5]])
    beta = tf.constant([[1.0, 1.0, -0.5], [-1.0, -1.0, -1.0]])
    allowed = tf.ones([2, 3], tf.bool)
    _, _, found = select_pair(alpha, beta, allowed, allowed)
    # Row 0: every pair has beta sum >= 0.5; row 1: every pair has alpha sum <= -0.5.
    assert not found.numpy().any()


def brute_force_target_pair(alpha, first_allowed, second_allowed):
    """The fallback over all pairs: the largest alpha_p + alpha_q > 0, or None."""
    sums = [alpha[p] + alpha[q] for p in range(len(alpha)) for q in range(len(alpha))
            if p != q and first_allowed[p] and second_allowed[q]]
    best = max(sums, default=-np.inf)
    return best if best > 0 else None


@pytest.mark.parametrize("restricted", [False, True])
def test_fallback_pair_equals_brute_force(restricted):
    rng = np.random.default_rng(int(restricted))
    batch, n = 64, 9
    # Rounded values make ties and a shared best feature of both masks common.
    alpha = np.round(rng.normal(size=(batch, n)) - 0.8, 0).astype(np.float32)
    second = rng.random((batch, n)) < 0.7
    first = second & (rng.random((batch, n)) < 0.4) if restricted else second
    p, q, found = (t.numpy() for t in select_target_pair(
        tf.constant(alpha), tf.constant(first), tf.constant(second)))
    assert found.any() and not found.all()
    for i in range(batch):
        expected = brute_force_target_pair(alpha[i], first[i], second[i])
        assert found[i] == (expected is not None)
        if expected is not None:
            assert first[i, p[i]] and second[i, q[i]] and p[i] != q[i]
            assert alpha[i, p[i]] + alpha[i, q[i]] == expected


def test_fallback_pair_needs_two_features():
    _, _, found = select_target_pair(tf.constant([[3.0]]), tf.constant([[True]]),
                                     tf.constant([[True]]))
    assert not found.numpy().any()


def test_fallback_moves_on_where_the_map_has_no_admissible_pair():
    # Every pixel raises every logit, the target's most: beta > 0 everywhere, so the map's
    # constraint beta_p + beta_q < 0 never holds, while raising pixels does reach the target.
    net = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(2)])
    net.layers[-1].set_weights([np.array([[1.0, 2.0]] * 4, np.float32),
                                np.array([1.0, 0.0], np.float32)])
    x = np.full((3, 2, 2, 1), 0.1, np.float32)
    y = np.zeros(3, np.int64)
    target = np.ones(3, np.int64)
    strict = JSMA(fallback=False)(net, x, y, target=target)
    np.testing.assert_array_equal(strict.x_adv, x)
    np.testing.assert_array_equal(strict.extras["iterations"], 0)
    out = JSMA()(net, x, y, target=target)
    assert np.all(predict(net, out.x_adv) == 1)
    assert np.all(out.extras["iterations"] > 0)
    assert out.x_adv.min() >= 0.1 and out.x_adv.max() <= 1.0


@pytest.mark.parametrize("saliency, moved", [("pairwise", [0, 1]), ("simplified", [1, 2])])
def test_saliency_maps_pick_their_pairs(saliency, moved):
    # Linear logits: alpha (target weights) = [0.5, 3, 2, -1], beta (the other class) =
    # [-3, 1, 1, 0]. The pairwise map maximises -(alpha_p + alpha_q)(beta_p + beta_q) under
    # its sign constraints: features 0 and 1 (score 7). The simplified map takes the two
    # largest alpha: features 1 and 2, which also raise the other class.
    net = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(2)])
    net.layers[-1].set_weights([np.array([[-3.0, 0.5], [1.0, 3.0], [1.0, 2.0], [0.0, -1.0]],
                                         np.float32), np.array([1.0, 0.0], np.float32)])
    x = np.full((1, 2, 2, 1), 0.1, np.float32)
    out = JSMA(saliency=saliency)(net, x, np.zeros(1, np.int64), target=np.ones(1, np.int64))
    assert predict(net, out.x_adv)[0] == 1
    np.testing.assert_array_equal(np.flatnonzero(out.x_adv != x), moved)
    # Pairwise: one step reaches the target; simplified: two (its pair helps class 0 too).
    assert out.extras["iterations"][0] == (1 if saliency == "pairwise" else 2)


# -- the attack -------------------------------------------------------------------------------

@pytest.mark.parametrize("theta, saliency", [(0.1, "pairwise"), (0.3, "pairwise"),
                                             (1.0, "pairwise"), (-0.2, "pairwise"),
                                             (0.1, "simplified"), (-0.2, "simplified")])
def test_outputs_in_range_and_features_move_by_theta(model, data, theta, saliency):
    x, y = data
    out = JSMA(theta=theta, saliency=saliency)(model, x, y, seed=0)
    assert out.x_adv.shape == x.shape and out.x_adv.dtype == np.float32
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    diff = (out.x_adv - x).ravel()
    moved = diff != 0
    assert moved.any()
    # Features only move in theta's direction, by a multiple of theta or onto the bound.
    assert np.all(np.sign(diff[moved]) == np.sign(theta))
    steps = diff[moved] / theta
    bound = 1.0 if theta > 0 else 0.0
    on_grid = np.abs(steps - np.round(steps)) < 1e-4
    assert np.all(on_grid | (out.x_adv.ravel()[moved] == bound))
    # Features already at the bound are outside the search domain.
    if theta > 0:
        assert np.all(out.x_adv[:, 0, 0, 0] == 1.0)
    else:
        assert np.all(out.x_adv[:, -1, -1, 0] == 0.0)


@pytest.mark.parametrize("gamma", [0.05, 0.1, 0.3, 1.0])
def test_l0_budget_holds(model, data, default_attack, gamma):
    x, y = data
    out = JSMA(gamma=gamma)(model, x, y, seed=0)
    counts = changed_count(out.x_adv, x)
    budget = math.floor(gamma * N_FEATURES)
    assert counts.max() <= budget
    # Each iteration moves two features, so a feature count needs at least half as many.
    assert np.all(2 * out.extras["iterations"] >= counts)
    if gamma <= 0.1:
        # A tight budget binds: some samples use all of it (an odd budget is reachable
        # because the last pair may bring in only one new feature) and success suffers.
        assert counts.max() == budget
        full = default_attack
        success = np.mean(predict(model, out.x_adv) == out.extras["target"])
        assert success < np.mean(predict(model, full.x_adv) == full.extras["target"])


def test_targeted_success_on_trained_model(model, data):
    x, y = data
    clean = predict(model, x)
    assert np.mean(clean == y) >= 0.9
    target = (y + 1 + np.arange(len(y)) % (NUM_CLASSES - 1)) % NUM_CLASSES
    out = JSMA()(model, x, y, target=target, seed=0)
    np.testing.assert_array_equal(out.extras["target"], target)
    assert np.mean(predict(model, out.x_adv) == target) >= 0.9
    # Early stop: a sample whose target is already predicted is left untouched.
    already = JSMA()(model, x, y, target=clean, seed=0)
    np.testing.assert_array_equal(already.x_adv, x)
    np.testing.assert_array_equal(already.extras["iterations"], 0)


def test_accuracy_after_attack_below_clean(model, data, default_attack):
    x, y = data
    out = default_attack
    assert np.mean(predict(model, out.x_adv) == y) < np.mean(predict(model, x) == y) - 0.5


def test_seeded_determinism(model, data, default_attack):
    x, y = data
    attack = JSMA()
    first, again = default_attack, attack(model, x, y, seed=0)
    np.testing.assert_array_equal(first.x_adv, again.x_adv)
    np.testing.assert_array_equal(first.extras["target"], again.extras["target"])
    other = attack(model, x, y, seed=1)
    assert np.any(other.extras["target"] != first.extras["target"])
    # Random targets are wrong classes and cover all of them.
    for out in (first, other):
        assert np.all(out.extras["target"] != y)
        assert set(np.unique(out.extras["target"])) == set(range(NUM_CLASSES))


def test_least_likely_targets(model, data):
    x, y = data
    out = JSMA(target_mode="least-likely")(model, x, y, seed=0)
    logits = model(x, training=False).numpy()
    logits[np.arange(len(y)), y] = np.inf
    np.testing.assert_array_equal(out.extras["target"], np.argmin(logits, axis=1))
    assert out.extras["iterations"].dtype == np.int64


def test_params_and_repr():
    attack = JSMA(theta=-0.5, gamma=0.2, target_mode="least-likely", fallback=False,
                  saliency="simplified")
    assert attack.params() == {"theta": -0.5, "gamma": 0.2, "target_mode": "least-likely",
                               "fallback": False, "saliency": "simplified"}
    assert repr(attack) == ("JSMA(theta=-0.5, gamma=0.2, target_mode='least-likely', "
                            "fallback=False, saliency='simplified')")
    assert JSMA().saliency == "pairwise"
    assert (JSMA.name, JSMA.norm, JSMA.supports_targets, JSMA.randomized) == (
        "jsma", "l0", True, True)


@pytest.mark.parametrize("kwargs, match", [
    ({"theta": 0.0}, "theta must be nonzero"),
    ({"theta": 1.5}, "theta must be <= 1.0, got 1.5"),
    ({"theta": -2.0}, "theta must be >= -1.0, got -2.0"),
    ({"theta": "big"}, "theta must be a number"),
    ({"gamma": 0.0}, "gamma must be > 0.0, got 0.0"),
    ({"gamma": 1.5}, "gamma must be <= 1.0, got 1.5"),
    ({"gamma": float("nan")}, "gamma must be a number, got NaN"),
    ({"target_mode": "closest"}, "target_mode must be one of random, least-likely, got 'closest'"),
    ({"fallback": "yes"}, "fallback must be True or False, got 'yes'"),
    ({"saliency": "single"}, "saliency must be one of pairwise, simplified, got 'single'"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        JSMA(**kwargs)


@pytest.mark.parametrize("target, match", [
    (np.zeros(3, np.int64), r"target must have shape \(32,\), one class per image, got \(3,\)"),
    (np.full(32, 4), r"target classes must be >= 0 and < 4, got values from 4 to 4"),
    (np.full(32, -1), r"target classes must be >= 0 and < 4, got values from -1 to -1"),
    (np.full(32, 0.5), "target must hold integer class labels, got float64"),
])
def test_bad_targets(model, data, target, match):
    x, y = data
    with pytest.raises(ParameterError, match=match):
        JSMA()(model, x, y, target=target)
