"""Tests of the gradient attacks fgsm-min, rand-fgsm, pgd and vat on a tiny trained conv net."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from advbench.attacks.fgsm import FGSM
from advbench.attacks.fgsm_min import MinimalFGSM, eps_grid
from advbench.attacks.pgd import PGD
from advbench.attacks.rand_fgsm import RandomFGSM
from advbench.attacks.vat import VirtualAdversarial, kl_from_logits, vat_loss, vat_perturbation
from advbench.core.errors import ParameterError

NUM_CLASSES = 3


def _synthetic(n: int, rng: np.random.Generator, templates: np.ndarray):
    """8x8x1 images in [0, 1]: a class template plus noise."""
    y = rng.integers(0, NUM_CLASSES, size=n)
    x = 0.25 + 0.5 * templates[y] + 0.08 * rng.standard_normal((n, 8, 8, 1))
    return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    """A conv net trained for a few seconds, with a test batch it classifies well."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    templates = rng.uniform(0.0, 1.0, size=(NUM_CLASSES, 8, 8, 1))
    x_train, y_train = _synthetic(900, rng, templates)
    x_test, y_test = _synthetic(120, rng, templates)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(NUM_CLASSES),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=0)
    return model, x_test, y_test


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model(x, training=False).numpy(), axis=1) == y))


def _linf(a, b):
    return np.abs(a - b).reshape(len(a), -1).max(axis=1)


def _l2(a, b):
    return np.linalg.norm((a - b).reshape(len(a), -1), axis=1)


def test_model_is_accurate(trained):
    model, x, y = trained
    assert _accuracy(model, x, y) > 0.9


# -- shared properties ------------------------------------------------------------------------

ATTACKS = [
    pytest.param(lambda: MinimalFGSM(eps_step=0.05, eps_max=1.0), id="fgsm-min"),
    pytest.param(lambda: RandomFGSM(eps=0.3, alpha=0.05), id="rand-fgsm"),
    pytest.param(lambda: PGD(eps=0.3, step_size=0.05, steps=10), id="pgd-linf"),
    pytest.param(lambda: PGD(eps=1.5, step_size=0.3, steps=10, norm="l2"), id="pgd-l2"),
    pytest.param(lambda: VirtualAdversarial(eps=2.1), id="vat"),
]


@pytest.mark.parametrize("make", ATTACKS)
def test_output_in_bounds_and_shape(trained, make):
    model, x, y = trained
    out = make()(model, x, y, seed=3)
    assert out.x_adv.shape == x.shape and out.x_adv.dtype == np.float32
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0


@pytest.mark.parametrize("make", ATTACKS)
def test_accuracy_drops(trained, make):
    model, x, y = trained
    out = make()(model, x, y, seed=3)
    assert _accuracy(model, out.x_adv, y) < _accuracy(model, x, y) - 0.2


@pytest.mark.parametrize("attack", [
    RandomFGSM(eps=0.0, alpha=0.0),
    PGD(eps=0.0),
    PGD(eps=0.0, norm="l2"),
    VirtualAdversarial(eps=0.0),
], ids=["rand-fgsm", "pgd-linf", "pgd-l2", "vat"])
def test_zero_eps_returns_input(trained, attack):
    model, x, y = trained
    np.testing.assert_array_equal(attack(model, x, y, seed=1).x_adv, x)


@pytest.mark.parametrize("attack, eps", [
    (RandomFGSM(eps=0.2, alpha=0.05), 0.2),
    (RandomFGSM(eps=0.1, alpha=0.1), 0.1),
    (PGD(eps=0.1, step_size=0.03, steps=8), 0.1),
    (PGD(eps=0.1, step_size=0.03, steps=8, random_start=False), 0.1),
])
def test_linf_budget(trained, attack, eps):
    model, x, y = trained
    x_adv = attack(model, x, y, seed=2).x_adv
    # float32 rounding of x + delta can exceed eps by an ulp.
    assert _linf(x_adv, x).max() <= eps + 1e-6
    assert _linf(x_adv, x).max() > 0.5 * eps


def test_pgd_l2_budget(trained):
    model, x, y = trained
    x_adv = PGD(eps=0.8, step_size=0.3, steps=8, norm="l2")(model, x, y, seed=2).x_adv
    assert _l2(x_adv, x).max() <= 0.8 + 1e-5
    assert _l2(x_adv, x).max() > 0.4


@pytest.mark.parametrize("make", [
    pytest.param(lambda: RandomFGSM(eps=0.2, alpha=0.1), id="rand-fgsm"),
    pytest.param(lambda: PGD(eps=0.2, steps=3), id="pgd-linf"),
    pytest.param(lambda: PGD(eps=1.0, step_size=0.2, steps=3, norm="l2"), id="pgd-l2"),
    pytest.param(lambda: VirtualAdversarial(eps=1.0), id="vat"),
])
def test_seed_determinism(trained, make):
    model, x, y = trained
    attack = make()
    first = attack(model, x, y, seed=5).x_adv
    np.testing.assert_array_equal(attack(model, x, y, seed=5).x_adv, first)
    np.testing.assert_array_equal(make()(model, x, y, seed=5).x_adv, first)
    assert not np.array_equal(attack(model, x, y, seed=6).x_adv, first)


# -- fgsm-min ---------------------------------------------------------------------------------

def test_eps_grid_accumulates_like_art():
    # ART walks current_eps += eps_step in Python floats while current_eps <= eps.
    expected, current = [], 0.01
    while current <= 1.0:
        expected.append(current)
        current += 0.01
    np.testing.assert_array_equal(eps_grid(0.01, 1.0), expected)
    assert len(eps_grid(0.01, 1.0)) == 99  # 0.01 summed 100 times is 1.0000000000000007
    assert len(eps_grid(0.1, 1.0)) == 10
    assert MinimalFGSM(eps_step=0.05).grid.dtype == np.float32


@pytest.mark.parametrize("eps_step, eps_max", [(0.05, 1.0), (0.01, 0.5), (0.3, 1.0)])
def test_fgsm_min_is_first_grid_point_that_flips(trained, eps_step, eps_max):
    model, x, y = trained
    attack = MinimalFGSM(eps_step=eps_step, eps_max=eps_max)
    out = attack(model, x, y)
    # The search starts from the model's prediction (ART's y=None), not from y.
    pred = np.argmax(model(x, training=False).numpy(), 1)
    direction = FGSM(eps=1.0).direction(model, x, pred)
    grid = attack.grid
    # Brute force: every sample at every grid point, then the first one whose prediction
    # changed.
    flipped = np.stack([
        np.argmax(model(np.clip(x + g * direction, 0.0, 1.0), training=False).numpy(), 1)
        != pred for g in grid])
    found = flipped.any(axis=0)
    first = np.where(found, np.argmax(flipped, axis=0), len(grid) - 1)
    np.testing.assert_array_equal(out.extras["found"], found)
    np.testing.assert_array_equal(out.extras["eps"], grid[first])
    np.testing.assert_array_equal(out.x_adv, np.clip(x + grid[first][:, None, None, None]
                                                     * direction, 0.0, 1.0))
    assert found.any()
    assert out.extras["eps"].dtype == np.float32 and out.extras["found"].dtype == bool


def test_fgsm_min_searches_from_the_prediction_not_the_label(trained):
    # Issue 14: with the label form, a misclassified sample counted as fooled at the first
    # grid eps. Searching from the prediction (as ART), the labels do not matter at all.
    model, x, y = trained
    wrong = (y + 1) % NUM_CLASSES
    attack = MinimalFGSM(eps_step=0.05)
    out = attack(model, x[:10], wrong[:10])
    clean_wrong = np.argmax(model(x[:10]).numpy(), 1) != wrong[:10]
    assert clean_wrong.sum() >= 8
    right = attack(model, x[:10], y[:10])
    np.testing.assert_array_equal(out.extras["eps"], right.extras["eps"])
    np.testing.assert_array_equal(out.x_adv, right.x_adv)
    assert np.all(out.extras["eps"][out.extras["found"]] > 0.05)


def test_fgsm_min_failure_ends_at_last_grid_point(trained):
    model, x, y = trained
    attack = MinimalFGSM(eps_step=0.001, eps_max=0.003)  # far too small to flip anything
    out = attack(model, x, y)
    correct = np.argmax(model(x).numpy(), 1) == y
    assert not out.extras["found"][correct].any()
    np.testing.assert_array_equal(out.extras["eps"][correct], attack.grid[-1])
    assert _linf(out.x_adv, x)[correct].max() <= attack.grid[-1] + 1e-6


def test_fgsm_min_batch_independent(trained):
    model, x, y = trained
    attack = MinimalFGSM(eps_step=0.02)
    whole = attack(model, x, y)
    parts = [attack(model, x[i:i + 7], y[i:i + 7]) for i in range(0, len(x), 7)]
    np.testing.assert_array_equal(np.concatenate([p.extras["eps"] for p in parts]),
                                  whole.extras["eps"])


def test_fgsm_min_targeted(trained):
    model, x, y = trained
    target = (y + 1) % NUM_CLASSES
    out = MinimalFGSM(eps_step=0.02)(model, x, y, target=target)
    hit = np.argmax(model(out.x_adv).numpy(), 1) == target
    np.testing.assert_array_equal(hit, out.extras["found"])
    assert hit.mean() > 0.5


# -- rand-fgsm --------------------------------------------------------------------------------

def test_rand_fgsm_alpha_equal_eps_is_pure_noise(trained):
    model, x, y = trained
    x_adv = RandomFGSM(eps=0.1, alpha=0.1)(model, x, y, seed=4).x_adv
    delta = (x_adv - x)[(x > 0.1) & (x < 0.9)]
    np.testing.assert_allclose(np.abs(delta), 0.1, atol=1e-6)


# -- pgd --------------------------------------------------------------------------------------

def test_pgd_stronger_than_fgsm(trained):
    model, x, y = trained
    pgd_acc = _accuracy(model, PGD(eps=0.1, step_size=0.02, steps=20)(model, x, y).x_adv, y)
    fgsm_acc = _accuracy(model, FGSM(eps=0.1)(model, x, y).x_adv, y)
    assert pgd_acc <= fgsm_acc


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.3, 0.05), ("l2", 2.0, 0.4)])
def test_pgd_targeted(trained, norm, eps, step):
    model, x, y = trained
    target = (y + 1) % NUM_CLASSES
    x_adv = PGD(eps=eps, step_size=step, steps=20, norm=norm)(model, x, y, target=target).x_adv
    assert np.mean(np.argmax(model(x_adv).numpy(), 1) == target) > 0.6


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.15, 0.03), ("l2", 1.0, 0.2)])
def test_pgd_early_stop(trained, norm, eps, step):
    model, x, y = trained
    # From x itself, so that the distance grows with the number of steps taken.
    full = PGD(eps=eps, step_size=step, steps=10, norm=norm, random_start=False)(
        model, x, y).x_adv
    early = PGD(eps=eps, step_size=step, steps=10, norm=norm, random_start=False,
                early_stop=True)(model, x, y).x_adv
    fooled_early = np.argmax(model(early).numpy(), 1) != y
    fooled_full = np.argmax(model(full).numpy(), 1) != y
    assert fooled_early.sum() >= fooled_full.sum() > 0
    # Frozen samples stopped short: smaller perturbations than the full run's on average.
    distance = _linf if norm == "linf" else _l2
    assert distance(early, x)[fooled_early].mean() < distance(full, x)[fooled_early].mean()
    assert distance(early, x).max() <= eps + 1e-5
    # Samples never fooled take exactly the same steps as in the full run.
    never = ~fooled_early & ~fooled_full
    np.testing.assert_allclose(early[never], full[never], atol=1e-6)


# -- vat --------------------------------------------------------------------------------------

def test_vat_direction_increases_kl_more_than_random(trained):
    model, x, _ = trained
    x = tf.constant(x)
    logits = model(x)
    eps = 0.5
    r_vat = vat_perturbation(model, x, logits, eps, 1e-6, 1, tf.constant([0, 0], tf.int64))
    norms = np.linalg.norm(r_vat.numpy().reshape(len(x), -1), axis=1)
    np.testing.assert_allclose(norms, eps, rtol=1e-4)
    r_random = tf.random.stateless_normal(tf.shape(x), seed=[7, 7])
    r_random = eps * r_random / tf.norm(tf.reshape(r_random, [len(x), -1]), axis=1)[:, None,
                                                                                     None, None]
    kl_vat = kl_from_logits(logits, model(x + r_vat)).numpy()
    kl_random = kl_from_logits(logits, model(x + r_random)).numpy()
    assert np.median(kl_vat) > 10 * np.median(kl_random)
    assert np.mean(kl_vat > kl_random) > 0.8


def test_vat_loss_in_graph_mode_has_gradients(trained):
    model, x, _ = trained

    @tf.function
    def step(xb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = tf.reduce_mean(vat_loss(model, xb, logits, eps=1.0,
                                           seed_tensor=tf.constant([1, 2], tf.int64)))
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = step(tf.constant(x[:32]))
    assert float(loss) > 0.0
    assert all(g is not None for g in grads)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0.0 for g in grads)


def test_vat_uses_no_label(trained):
    model, x, y = trained
    attack = VirtualAdversarial(eps=1.0)
    np.testing.assert_array_equal(attack(model, x, y, seed=0).x_adv,
                                  attack(model, x, (y + 1) % NUM_CLASSES, seed=0).x_adv)


# -- provenance and errors --------------------------------------------------------------------

@pytest.mark.parametrize("attack, text", [
    (MinimalFGSM(), "MinimalFGSM(eps_step=0.05, eps_max=1.0, search='exact')"),
    (RandomFGSM(), "RandomFGSM(eps=0.1, alpha=0.05)"),
    (PGD(), "PGD(eps=0.3, step_size=0.01, steps=40, random_start=True, norm='linf', "
            "early_stop=False)"),
    (VirtualAdversarial(), "VirtualAdversarial(eps=2.1, xi=1e-06, power_iterations=1)"),
])
def test_repr_holds_every_parameter(attack, text):
    assert repr(attack) == text


@pytest.mark.parametrize("make, match", [
    (lambda: MinimalFGSM(eps_step=0.0), r"eps_step must be > 0.0, got 0.0"),
    (lambda: MinimalFGSM(eps_step="a"), r"eps_step must be a number, got 'a'"),
    (lambda: MinimalFGSM(eps_max=-1.0), r"eps_max must be > 0.0, got -1.0"),
    (lambda: MinimalFGSM(eps_step=0.5, eps_max=0.2), r"eps_step \(0.5\) must be <= eps_max"),
    (lambda: RandomFGSM(eps=-0.1), r"eps must be >= 0.0, got -0.1"),
    (lambda: RandomFGSM(alpha=-0.1), r"alpha must be >= 0.0, got -0.1"),
    (lambda: RandomFGSM(eps=0.1, alpha=0.2), r"alpha \(0.2\) must be <= eps \(0.1\)"),
    (lambda: PGD(eps=-1.0), r"eps must be >= 0.0, got -1.0"),
    (lambda: PGD(step_size=0.0), r"step_size must be > 0.0, got 0.0"),
    (lambda: PGD(steps=2.5), r"steps must be an integer, got 2.5"),
    (lambda: PGD(steps=-1), r"steps must be >= 0, got -1"),
    (lambda: PGD(random_start="yes"), r"random_start must be True or False, got 'yes'"),
    (lambda: PGD(norm="l1"), r"^norm must be one of linf, l2, got 'l1'$"),
    (lambda: PGD(early_stop=1), r"early_stop must be True or False, got 1"),
    (lambda: VirtualAdversarial(eps=float("nan")), r"eps must be a number, got NaN"),
    (lambda: VirtualAdversarial(xi=0.0), r"xi must be > 0.0, got 0.0"),
    (lambda: VirtualAdversarial(power_iterations=0), r"power_iterations must be >= 1, got 0"),
])
def test_bad_parameters(make, match):
    with pytest.raises(ParameterError, match=match):
        make()


@pytest.mark.parametrize("attack", [RandomFGSM(), VirtualAdversarial()], ids=["rand-fgsm", "vat"])
def test_untargeted_attacks_reject_targets(trained, attack):
    model, x, y = trained
    with pytest.raises(ParameterError, match="untargeted only"):
        attack(model, x, y, target=y)


def test_vat_saturated_softmax_falls_back_to_random_direction():
    # Huge logits: p(x + xi d) rounds to p(x), the KL gradient is exactly zero.
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    kernel = np.zeros((16, 3), np.float32)
    kernel[:, 0] = 1000.0
    model.layers[-1].set_weights([kernel, np.zeros(3, np.float32)])
    x = tf.constant(np.random.default_rng(0).uniform(0.2, 0.8, (5, 4, 4, 1)).astype(np.float32))
    seed = tf.constant([0, 0], tf.int64)
    r = vat_perturbation(model, x, model(x), 0.3, 1e-6, 1, seed).numpy()
    np.testing.assert_allclose(np.linalg.norm(r.reshape(5, -1), axis=1), 0.3, rtol=1e-4)
    start = tf.random.stateless_normal(tf.shape(x), seed=seed).numpy()
    expected = 0.3 * start / np.linalg.norm(start.reshape(5, -1), axis=1)[:, None, None, None]
    np.testing.assert_allclose(r, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("margin", [5.0, 30.0, 60.0])
def test_l2_steps_keep_their_length_on_confident_inputs(margin):
    """A linear model whose logit margin is ``margin`` on every input: the cross-entropy
    gradient is ~exp(-margin), whose square underflowed the old max(norm, 1e-12) guard (a step
    of 0.06 eps at margin 30, zero from 45). Each L2 step must still move by eps."""
    from advbench.core.ops import l2_normalize

    features = 16
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    weights = np.zeros((features, 2), np.float32)
    weights[:, 0], weights[:, 1] = 1.0 / features, -1.0 / features
    model.layers[-1].set_weights([weights, np.array([margin, 0.0], np.float32)])
    x = np.full((3, 4, 4, 1), 0.5, np.float32)
    y = np.zeros(3, np.int64)
    for attack in (FGSM(eps=0.5, norm="l2"), PGD(eps=0.5, step_size=0.5, steps=1, norm="l2",
                                                 random_start=False)):
        delta = attack(model, x, y, seed=0).x_adv - x
        np.testing.assert_allclose(np.linalg.norm(delta.reshape(3, -1), axis=1), 0.5,
                                   rtol=1e-5)
    tiny = tf.constant(np.full((2, 3), 1e-30, np.float32))
    np.testing.assert_allclose(tf.norm(l2_normalize(tiny), axis=1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(l2_normalize(tf.zeros((2, 3))).numpy(), 0.0)
