"""DeepFool (L2): closed form on affine models, bounds, success on a tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from advbench.attacks.deepfool import DeepFool  # noqa: E402
from advbench.core.errors import ParameterError  # noqa: E402

from conftest import PROTOTYPE_CLASSES as CLASSES  # noqa: E402
from conftest import prototype_images as synthetic_images  # noqa: E402



def affine_model(seed: int, classes: int = 5):
    """Flatten + Dense without activation: the decision boundaries are hyperplanes."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(classes)])
    weights = rng.normal(0.0, 1.0, (16, classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, classes).astype(np.float32)
    model.layers[-1].set_weights([weights, bias])
    return model, weights, bias


@pytest.mark.parametrize("candidates, overshoot", [(2, 0.02), (3, 0.3), (10, 0.02)])
def test_affine_model_matches_closed_form(overshoot, candidates):
    model, weights, bias = affine_model(seed=3)
    rng = np.random.default_rng(4)
    x = (0.5 + rng.uniform(-0.02, 0.02, (16, 4, 4, 1))).astype(np.float32)
    flat = x.reshape(16, -1)
    logits = flat @ weights + bias
    y = logits.argmax(1)
    out = DeepFool(overshoot=overshoot, candidates=candidates)(model, x, y)

    # Closed form: the nearest hyperplane f_k = f_y among the candidate classes, reached in
    # one step r = |f_k - f_y| / ||w_k - w_y||^2 (w_k - w_y), scaled by 1 + overshoot.
    k = min(candidates, logits.shape[1])
    for i in range(len(x)):
        others = [c for c in np.argsort(-logits[i]) if c != y[i]][:k - 1]
        normals = weights[:, others] - weights[:, [y[i]]]  # (16, k - 1)
        gaps = np.abs(logits[i, others] - logits[i, y[i]])
        distances = gaps / np.linalg.norm(normals, axis=0)
        nearest = np.argmin(distances)
        normal = normals[:, nearest]
        expected = (1 + overshoot) * gaps[nearest] / (normal @ normal) * normal
        assert np.all((flat[i] + expected > 0) & (flat[i] + expected < 1)), "clipping interferes"
        np.testing.assert_allclose((out.x_adv[i] - x[i]).ravel(), expected, rtol=1e-3,
                                   atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(out.x_adv[i] - x[i]),
                                   (1 + overshoot) * distances[nearest], rtol=1e-3)
    np.testing.assert_array_equal(out.extras["iterations"], np.ones(len(x), np.int32))
    assert np.all(np.argmax(model.predict(out.x_adv, verbose=0), 1) != y)


@pytest.mark.parametrize("box_aware", [False, True])
def test_tiny_model_success_bounds_and_accuracy(tiny_model, box_aware):
    x, y = synthetic_images(128, seed=2)
    clean = np.argmax(tiny_model.predict(x, verbose=0), 1)
    out = DeepFool(box_aware=box_aware)(tiny_model, x, y)
    adversarial = np.argmax(tiny_model.predict(out.x_adv, verbose=0), 1)

    assert out.x_adv.shape == x.shape and out.x_adv.dtype == np.float32
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    correct = clean == y
    assert correct.mean() > 0.8
    assert (adversarial[correct] != y[correct]).mean() >= 0.95
    assert (adversarial == y).mean() < correct.mean()
    iterations = out.extras["iterations"]
    assert iterations.shape == (len(x),) and iterations.dtype == np.int32
    assert np.all(iterations[correct] >= 1) and np.all(iterations <= 100)
    # Samples misclassified from the start are returned unchanged, with no step taken.
    np.testing.assert_array_equal(out.x_adv[~correct], x[~correct])
    assert np.all(iterations[~correct] == 0)


def test_box_aware_needs_fewer_steps_on_saturated_images(tiny_model):
    x, y = synthetic_images(128, seed=5)
    x = np.round(x)  # binary images: every pixel sits on a bound, as in MNIST's background
    plain = DeepFool()(tiny_model, x, y).extras["iterations"]
    aware = DeepFool(box_aware=True)(tiny_model, x, y).extras["iterations"]
    assert aware.mean() < plain.mean()


def test_max_iter_caps_the_steps(tiny_model):
    x, y = synthetic_images(64, seed=6)
    out = DeepFool(max_iter=1)(tiny_model, x, y)
    assert out.extras["iterations"].max() <= 1


def test_same_attack_object_serves_two_models(tiny_model):
    attack = DeepFool()
    model, _, _ = affine_model(seed=7, classes=CLASSES)
    x, y = synthetic_images(16, seed=8)
    first = attack(tiny_model, x, y).x_adv
    attack(model, x[:, :4, :4], y)
    np.testing.assert_array_equal(attack(tiny_model, x, y).x_adv, first)


def test_params_and_repr():
    attack = DeepFool(max_iter=50, overshoot=0.1, candidates=3)
    assert attack.params() == {"max_iter": 50, "overshoot": 0.1, "candidates": 3,
                               "epsilon": 1e-6, "box_aware": False}
    assert repr(attack).startswith("DeepFool(max_iter=50, overshoot=0.1, candidates=3")
    assert (DeepFool.name, DeepFool.minimal, DeepFool.norm) == ("deepfool", True, "l2")
    assert not DeepFool.supports_targets


@pytest.mark.parametrize("kwargs, message", [
    ({"max_iter": 0}, "max_iter must be >= 1, got 0"),
    ({"max_iter": 2.5}, "max_iter must be an integer, got 2.5"),
    ({"overshoot": -0.1}, "overshoot must be >= 0.0, got -0.1"),
    ({"overshoot": "big"}, "overshoot must be a number, got 'big'"),
    ({"candidates": 1}, "candidates must be >= 2, got 1"),
    ({"epsilon": 0.0}, "epsilon must be > 0.0, got 0.0"),
    ({"box_aware": "yes"}, "box_aware must be True or False, got 'yes'"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ParameterError, match=message.replace(".", r"\.").replace("(", r"\(")):
        DeepFool(**kwargs)


def test_labels_out_of_range(tiny_model):
    x, _ = synthetic_images(4, seed=9)
    with pytest.raises(ParameterError, match=r"y must hold class indices in \[0, 4\)"):
        DeepFool()(tiny_model, x, np.array([0, 1, 2, 4]))


def test_targets_refused(tiny_model):
    x, y = synthetic_images(4, seed=9)
    with pytest.raises(ParameterError, match="untargeted only"):
        DeepFool()(tiny_model, x, y, target=y)
