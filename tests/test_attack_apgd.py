"""Auto-PGD (apgd-ce, apgd-dlr, apgd-t) on the tiny prototype model and on models built to
mask gradients."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (PROTOTYPE_CLASSES, PROTOTYPE_SHAPE, accuracy, behind, input_noise,
                      perturbation_size, prototype_images)

from advbench.attacks.apgd import checkpoint_lengths, dlr_loss, dlr_targeted_loss
from advbench.attacks.norms import NORMS
from advbench.attacks.apgd_ce import APGDCrossEntropy
from advbench.attacks.apgd_dlr import APGDDifferenceLogitsRatio
from advbench.attacks.apgd_t import APGDTargeted, ranked_targets
from advbench.attacks.pgd import PGD
from advbench.core.errors import ParameterError

APGD = {"apgd-ce": APGDCrossEntropy, "apgd-dlr": APGDDifferenceLogitsRatio,
        "apgd-t": APGDTargeted}
EPS = {"linf": 0.2, "l2": 1.0, "l1": 3.0}


@pytest.fixture(scope="module")
def samples():
    return prototype_images(60, seed=5)


def make(name: str, **params):
    params.setdefault("n_iter", 10)
    if name == "apgd-t":
        params.setdefault("n_target_classes", 2)
    return APGD[name](**params)


@pytest.fixture(scope="module")
def scaled_model(tiny_model):
    """The tiny model with its logits multiplied by 1,000: same predictions, but the softmax
    saturates, so the cross-entropy gradient is exactly zero at every correctly classified
    sample (the classic way a defense masks gradients)."""
    inputs = keras.Input(PROTOTYPE_SHAPE)
    return keras.Model(inputs, keras.layers.Rescaling(1000.0)(tiny_model(inputs)))


def test_checkpoints_are_the_papers():
    lengths = checkpoint_lengths(100)
    ends = np.flatnonzero(lengths) + 1
    np.testing.assert_array_equal(ends, [22, 41, 57, 70, 80, 87, 93, 99])
    np.testing.assert_array_equal(lengths[ends - 1], [22, 19, 16, 13, 10, 7, 6, 6])
    assert list(np.flatnonzero(checkpoint_lengths(10)) + 1) == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_dlr_losses_by_hand_and_scale_invariant():
    logits = tf.constant([[4.0, 1.0, 3.0, 0.0], [0.0, 2.0, 1.0, 5.0]])
    labels = tf.constant([0, 1])
    # Sample 0: -(4 - 3) / (4 - 1); sample 1 (misclassified): -(2 - 5) / (5 - 1).
    np.testing.assert_allclose(dlr_loss(logits, labels).numpy(), [-1 / 3, 3 / 4], rtol=1e-6)
    targets = tf.constant([2, 3])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    np.testing.assert_allclose(dlr_targeted_loss(logits, labels, targets).numpy(),
                               [-(4 - 3) / (4 - 0.5), -(2 - 5) / (5 - 0.5)], rtol=1e-6)
    shifted = 7.0 * logits - 3.0
    np.testing.assert_allclose(dlr_loss(shifted, labels), dlr_loss(logits, labels), rtol=1e-5)
    np.testing.assert_allclose(dlr_targeted_loss(shifted, labels, targets),
                               dlr_targeted_loss(logits, labels, targets), rtol=1e-5)


@pytest.mark.parametrize("norm, largereps", [("linf", False), ("l2", False), ("l1", False),
                                             ("l1", True)])
@pytest.mark.parametrize("name", sorted(APGD))
def test_budget_holds_and_outputs_in_bounds(tiny_model, samples, name, norm, largereps):
    x, y = samples
    eps = EPS[norm]
    out = make(name, eps=eps, norm=norm, use_largereps=largereps)(tiny_model, x, y, seed=1)
    assert perturbation_size(x, out.x_adv, norm).max() <= eps
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    assert accuracy(tiny_model, out.x_adv, y) < accuracy(tiny_model, x, y)


def test_hold_moves_points_an_ulp_inside_and_keeps_points_inside():
    x = np.full((2, 3), 0.7, np.float32)
    outside = x + np.float32(0.1)  # 0.8000001 in float32: 0.1 + 1.2e-8 away
    assert np.abs(outside.astype(np.float64) - x).max() > 0.1
    held = NORMS["linf"].hold(x, outside, 0.1).numpy()
    assert np.abs(held.astype(np.float64) - x).max() <= 0.1
    assert np.abs(held - outside).max() < 1e-7
    inside = np.nextafter(outside, x)
    assert np.array_equal(NORMS["linf"].hold(x, inside, 0.1).numpy(), inside)
    big = x + np.float32(0.5)
    held = NORMS["l2"].hold(x, np.clip(big, 0, 1), 0.2).numpy()
    assert np.linalg.norm((held.astype(np.float64) - x), axis=1).max() <= 0.2


def test_hold_from_zero_when_x_minus_eps_rounds_to_zero():
    # MNIST's pixel 51/255 is 0.2 in float32 (0.2000000030): x - eps clips to 0, which lies
    # 3e-9 outside the ball in float64; the ulps between 0 and the edge are subnormals.
    x = np.array([[51 / 255, 52 / 255, 0.5]], np.float32)
    x_adv = np.array([[0.0, 0.0, 0.3]], np.float32)
    held = NORMS["linf"].hold(x, x_adv, 0.2).numpy()
    distance = np.abs(held.astype(np.float64) - x)
    assert distance.max() <= 0.2
    assert distance[0, :2].min() > 0.2 - 1e-7 and held[0, 2] == np.float32(0.3)


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l1", 0.5)])
@pytest.mark.parametrize("name", sorted(APGD))
def test_same_seed_same_result_other_seed_other_start(tiny_model, samples, name, norm, eps):
    x, y = samples
    attack = make(name, eps=eps, norm=norm)  # small: most samples stay robust and keep their best point
    first = attack(tiny_model, x, y, seed=4).x_adv
    np.testing.assert_array_equal(first, attack(tiny_model, x, y, seed=4).x_adv)
    assert not np.array_equal(first, attack(tiny_model, x, y, seed=5).x_adv)


def test_misclassified_samples_are_returned_unchanged(tiny_model, samples):
    x, y = samples
    wrong = (y + 1) % PROTOTYPE_CLASSES
    for name in APGD:
        out = make(name, eps=0.2)(tiny_model, x[:10], wrong[:10], seed=0)
        np.testing.assert_array_equal(out.x_adv, x[:10])


def test_targets_are_never_the_label(tiny_model, samples):
    x, y = samples
    out = APGDTargeted(eps=0.1, n_iter=5, n_target_classes=3)(tiny_model, x, y, seed=0)
    correct = np.argmax(tiny_model(x).numpy(), axis=1) == y
    target = out.extras["target"]
    assert target.shape == y.shape
    assert np.all(target[correct] != y[correct]) and np.all(target[correct] >= 0)
    assert np.all(target[~correct] == -1)
    logits = np.array([[0.0, 9.0, 1.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    # The label is excluded even when it is not the top class (sample 0 is misclassified).
    np.testing.assert_array_equal(ranked_targets(logits, np.array([3, 0]), 3),
                                  [[1, 2, 0], [1, 2, 3]])


def test_more_restarts_never_weaker(tiny_model, samples):
    x, y = samples
    # Few steps, so that another start still finds something (APGD converges fast here).
    one = APGDCrossEntropy(eps=0.15, n_iter=2, n_restarts=1)(tiny_model, x, y, seed=2).x_adv
    three = APGDCrossEntropy(eps=0.15, n_iter=2, n_restarts=4)(tiny_model, x, y, seed=2).x_adv
    fooled_one = np.argmax(tiny_model(one).numpy(), axis=1) != y
    fooled_three = np.argmax(tiny_model(three).numpy(), axis=1) != y
    assert np.all(fooled_three[fooled_one]) and fooled_three.sum() > fooled_one.sum()


def test_a_sample_gets_the_same_result_whatever_runs_beside_it(tiny_model, samples):
    x, y = samples
    attack = make("apgd-ce", eps=0.15)
    _, fooled_all, _ = attack.run_on(tiny_model, x, y, seed=3, ids=np.arange(len(x)),
                                     total=len(x))
    rows = np.arange(0, len(x), 3)
    _, fooled_some, _ = attack.run_on(tiny_model, x[rows], y[rows], seed=3, ids=rows,
                                      total=len(x))
    np.testing.assert_array_equal(fooled_some, fooled_all[rows])


def test_apgd_beats_pgd_where_the_softmax_saturates(scaled_model, samples):
    """On logits scaled by 1,000 the cross-entropy gradient vanishes: PGD (and APGD-CE) stay
    at their random start, while the scale-invariant DLR losses still find adversarials."""
    x, y = samples
    clean = accuracy(scaled_model, x, y)
    pgd = accuracy(scaled_model, PGD(eps=0.2, step_size=0.05, steps=10)(
        scaled_model, x, y, seed=0).x_adv, y)
    assert pgd == clean
    for name in ("apgd-t", "apgd-dlr"):
        apgd = accuracy(scaled_model, make(name, eps=0.2)(scaled_model, x, y, seed=0).x_adv, y)
        assert apgd < pgd - 0.5, (name, apgd, pgd)


def test_eot_on_a_deterministic_model_changes_nothing(tiny_model, samples):
    x, y = samples
    plain = make("apgd-ce", eps=0.1)(tiny_model, x, y, seed=0).x_adv
    averaged = make("apgd-ce", eps=0.1, eot_iter=3)(tiny_model, x, y, seed=0).x_adv
    np.testing.assert_allclose(averaged, plain, atol=1e-6)


def test_eot_attacks_a_randomised_model(tiny_model, samples):
    """A model that adds fresh Gaussian noise to its input on every call."""
    x, y = samples
    model = behind(tiny_model, input_noise())
    out = make("apgd-ce", eps=0.2, eot_iter=4)(model, x, y, seed=0)
    assert np.abs(out.x_adv.astype(np.float64) - x).max() <= 0.2
    assert accuracy(tiny_model, out.x_adv, y) < accuracy(tiny_model, x, y) - 0.3


@pytest.mark.parametrize("params, message", [
    ({"norm": "l0"}, "norm must be one of linf, l2, l1, got 'l0'"),
    ({"use_largereps": True}, "use_largereps is AutoAttack's schedule for norm l1; attack "
     "'apgd-ce' got norm 'linf': drop use_largereps or use norm l1"),
    ({"use_largereps": 1}, "use_largereps must be True or False, got 1"),
    ({"eps": -0.1}, "eps must be >= 0.0, got -0.1"),
    ({"n_iter": 0}, "n_iter must be >= 1, got 0"),
    ({"n_restarts": 1.5}, "n_restarts must be an integer, got 1.5"),
    ({"rho": 1.5}, "rho must be <= 1.0, got 1.5"),
    ({"eot_iter": 0}, "eot_iter must be >= 1, got 0"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ParameterError, match=f"^{message}$".replace("(", r"\(")):
        APGDCrossEntropy(**params)
    with pytest.raises(ParameterError, match="^n_target_classes must be >= 1, got 0$"):
        APGDTargeted(n_target_classes=0)


def test_dlr_losses_need_enough_classes(samples):
    x, y = samples
    inputs = keras.Input(PROTOTYPE_SHAPE)
    two = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ParameterError, match=r"^attack 'apgd-dlr' needs a model with at least 3 "
                       r"classes \(its loss reads the logits ranked below the top two\), got 2$"):
        APGDDifferenceLogitsRatio()(two, x, y % 2)
    with pytest.raises(ParameterError, match="^attack 'apgd-t' needs a model with at least 4"):
        APGDTargeted()(two, x, y % 2)
    with pytest.raises(ParameterError, match=r"^y must hold class indices in \[0, 2\)"):
        APGDCrossEntropy()(two, x, y)


def test_targets_are_refused():
    with pytest.raises(ParameterError, match="untargeted only"):
        APGDTargeted()(None, np.zeros((1, 8, 8, 1), np.float32), np.zeros(1), target=np.ones(1))
