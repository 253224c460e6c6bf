"""The AutoAttack ensemble: order, bookkeeping, never weaker than a member, versions."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import (PROTOTYPE_CLASSES, PROTOTYPE_SHAPE, behind, input_noise, perturbation_size,
                      prototype_images, quantiser)

from advbench.attacks.autoattack import (MISCLASSIFIED, ROBUST, AutoAttack,
                                         robust_accuracy_by_attack)
from advbench.core.errors import ParameterError

FAST = {"n_iter": 5, "n_target_classes": 2, "n_queries": 100}


@pytest.fixture(scope="module")
def samples():
    return prototype_images(48, seed=5)


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=1)


def test_standard_and_rand_members():
    standard = AutoAttack(eps=0.1, norm="l2")
    assert standard.attack_names == ("apgd-ce", "apgd-t", "square")
    assert all(a.eps == 0.1 and a.norm == "l2" for a in standard.attacks)
    assert standard.attacks[0].n_restarts == 1 and standard.attacks[1].n_target_classes == 9
    assert standard.attacks[2].n_queries == 5000 and standard.attacks[2].p_init == 0.8
    rand = AutoAttack(version="rand")
    assert rand.attack_names == ("apgd-ce", "apgd-dlr")
    assert all(a.eot_iter == 20 and a.n_restarts == 1 for a in rand.attacks)


@pytest.mark.parametrize("norm, eps", [("linf", 0.15), ("l2", 0.8)])
def test_never_weaker_than_any_member(tiny_model, samples, norm, eps):
    """Per sample: every sample a member fools alone, the ensemble fools too."""
    x, y = samples
    ensemble = AutoAttack(eps=eps, norm=norm, **FAST)
    out = ensemble(tiny_model, x, y, seed=2)
    robust = predictions(tiny_model, out.x_adv) == y
    # The ensemble's own member objects, run alone (their settings are checked above).
    members = ensemble.attacks
    assert [m.name for m in members] == ["apgd-ce", "apgd-t", "square"]
    fooled_by_some = np.zeros(len(x), bool)
    for member in members:
        alone = predictions(tiny_model, member(tiny_model, x, y, seed=2).x_adv) != y
        assert not np.any(alone & robust), member.name
        fooled_by_some |= alone
    # And the ensemble fools exactly the union of its members' samples.
    np.testing.assert_array_equal(~robust, fooled_by_some)
    assert perturbation_size(x, out.x_adv, norm).max() <= eps
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0


def test_broken_by_records_the_first_member_that_fooled(tiny_model, samples):
    x, y = samples
    y = y.copy()
    y[:3] = (y[:3] + 1) % PROTOTYPE_CLASSES  # three samples the model gets wrong
    attack = AutoAttack(eps=0.15, **FAST)
    out = attack(tiny_model, x, y, seed=0)
    broken_by = out.extras["broken_by"]
    assert broken_by.dtype == np.int32 and broken_by.shape == y.shape
    clean_wrong = predictions(tiny_model, x) != y
    np.testing.assert_array_equal(broken_by == MISCLASSIFIED, clean_wrong)
    np.testing.assert_array_equal(out.x_adv[clean_wrong], x[clean_wrong])
    adv_wrong = predictions(tiny_model, out.x_adv) != y
    np.testing.assert_array_equal(broken_by == ROBUST, ~adv_wrong)
    # Members that ran later only saw what the earlier ones left.
    assert set(np.unique(broken_by)) <= {MISCLASSIFIED, ROBUST, 0, 1, 2}
    assert (broken_by == 0).sum() > 0


def test_robust_accuracy_table():
    broken_by = np.array([-2, -1, 0, 0, 1, 2, -1, -1, 2, 0])
    table = robust_accuracy_by_attack(broken_by, ("apgd-ce", "apgd-t", "square"))
    assert table == {"clean": 0.9, "apgd-ce": 0.6, "apgd-t": 0.5, "square": 0.3}
    assert robust_accuracy_by_attack(np.array([], int), ("a",)) == {"clean": 0.0, "a": 0.0}


def test_square_catches_what_gradients_miss(tiny_model, samples):
    """Behind a quantiser with no gradient only Square (index 2) fools anything: the
    per-attack table then shows the gradient attacks leaving robust accuracy untouched."""
    x, y = samples
    model = behind(tiny_model, quantiser())
    attack = AutoAttack(eps=0.3, n_iter=5, n_target_classes=2, n_queries=300)
    table = robust_accuracy_by_attack(attack(model, x, y, seed=0).extras["broken_by"],
                                      attack.attack_names)
    assert table["clean"] == table["apgd-ce"] == table["apgd-t"]
    assert table["square"] < table["apgd-t"] - 0.3


def test_rand_version_on_a_randomised_model(tiny_model, samples):
    x, y = samples
    model = behind(tiny_model, input_noise())
    attack = AutoAttack(eps=0.2, version="rand", n_iter=5, eot_iter=3)
    out = attack(model, x, y, seed=0)
    assert np.abs(out.x_adv.astype(np.float64) - x).max() <= 0.2
    assert set(np.unique(out.extras["broken_by"])) <= {MISCLASSIFIED, ROBUST, 0, 1}
    assert np.mean(predictions(tiny_model, out.x_adv) == y) < 0.5


def test_a_dlr_member_is_skipped_below_its_classes(samples):
    x, y = samples
    inputs = keras.Input(PROTOTYPE_SHAPE)
    keras.utils.set_random_seed(1)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    labels = predictions(model, x)  # all correct, so every sample is attacked
    out = AutoAttack(eps=0.3, **FAST)(model, x, labels, seed=0)
    assert 1 not in out.extras["broken_by"]  # apgd-t needs 4 classes: not run


@pytest.mark.parametrize("params, message", [
    ({"version": "plus"}, "version must be one of standard, rand, got 'plus'"),
    ({"norm": "l1"}, "norm must be one of linf, l2, got 'l1'"),
    ({"n_queries": 0}, "n_queries must be >= 1, got 0"),
    ({"eot_iter": 2.0}, "eot_iter must be an integer, got 2.0"),
    ({"eps": float("nan")}, "eps must be a number, got NaN"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ParameterError, match=f"^{message}$"):
        AutoAttack(**params)
