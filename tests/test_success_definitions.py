"""Success judged against the clean prediction (as IBM ART and the paper's authors) and
against the label (issue 14): both stored, the prediction form by default, and minimal FGSM's
empirical robustness equal to ART's ``empirical_robustness`` on a model that misclassifies."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from advbench import evaluate as ev, metrics
from advbench.artifacts import ATTACK_SCHEMA, read_arrays
from advbench.attacks.fgsm_min import MinimalFGSM
from advbench.errors import ParameterError
from advbench.models import predict_labels
from advbench.runner import AttackRun, attack_split, stored_success

from conftest import PROTOTYPE_CLASSES, PROTOTYPE_SHAPE, prototype_images


def test_attack_success_both_ways():
    pred_adv, pred_clean, y = np.array([1, 2, 0]), np.array([1, 1, 2]), np.array([0, 1, 2])
    np.testing.assert_array_equal(metrics.attack_success(pred_adv, pred_clean, y),
                                  [False, True, True])
    np.testing.assert_array_equal(
        metrics.attack_success(pred_adv, pred_clean, y, against="label"), [True, True, True])
    np.testing.assert_array_equal(
        metrics.attack_success(pred_adv, pred_clean, y, target=np.array([1, 0, 0])),
        [True, False, True])
    with pytest.raises(ParameterError, match=r"^against must be one of prediction, label, "
                                             r"got 'clean'$"):
        metrics.attack_success(pred_adv, pred_clean, y, against="clean")


@pytest.fixture(scope="module")
def weak_model():
    """A linear model trained a single step: it misclassifies a good share of the images."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input(PROTOTYPE_SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(PROTOTYPE_CLASSES)])
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = prototype_images(64, seed=1)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    return model


def test_misclassified_samples_are_not_fooled_for_free(weak_model):
    x, y = prototype_images(60, seed=7)
    pred_clean = predict_labels(weak_model, x)
    wrong = pred_clean != y
    assert 5 <= wrong.sum() <= 55
    attack = MinimalFGSM(eps_step=0.02, eps_max=1.0)
    out = attack(weak_model, x, y)
    pred_adv = predict_labels(weak_model, out.x_adv)
    success = metrics.attack_success(pred_adv, pred_clean, y)
    # Fooled only when the prediction moved, which the search did exactly for the found ones,
    # and never at the first grid eps for free.
    np.testing.assert_array_equal(success, out.extras["found"])
    # Before issue 14 every misclassified sample stopped at the first grid eps.
    assert (out.extras["eps"][wrong] > attack.grid[0]).sum() >= wrong.sum() // 2


def test_robustness_equals_arts_empirical_robustness(weak_model):
    art_metrics = pytest.importorskip("art.metrics")
    from art.estimators.classification import TensorFlowV2Classifier

    import tensorflow as tf

    x, y = prototype_images(60, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classifier = TensorFlowV2Classifier(
            model=weak_model, nb_classes=PROTOTYPE_CLASSES, input_shape=PROTOTYPE_SHAPE,
            loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            clip_values=(0.0, 1.0))
        expected = art_metrics.empirical_robustness(
            classifier, x, "fgsm", {"eps_step": 0.02, "eps": 1.0, "norm": np.inf})
    out = MinimalFGSM(eps_step=0.02, eps_max=1.0)(weak_model, x, y)
    pred_clean = predict_labels(weak_model, x)
    pred_adv = predict_labels(weak_model, out.x_adv)
    ours = metrics.empirical_robustness(
        x, out.x_adv, metrics.attack_success(pred_adv, pred_clean, y), norm="linf")
    assert ours.value == pytest.approx(expected, rel=1e-5)
    # The label form (advbench before issue 14) differs on this model.
    label_form = metrics.empirical_robustness(
        x, out.x_adv, metrics.attack_success(pred_adv, pred_clean, y, against="label"),
        norm="linf")
    assert label_form.value != pytest.approx(expected, rel=1e-3)


def test_artifact_and_evaluate_use_the_prediction_form(dense_mnist_model, fake_data_dir,
                                                      tmp_path):
    path, model, meta = dense_mnist_model
    run = AttackRun(model_path=str(path), dataset="mnist", limit=30, batch_size=8,
                    data_dir=str(fake_data_dir))
    out = attack_split(run, MinimalFGSM(eps_step=0.05), model, meta, tmp_path / "min.h5")
    attrs, arrays = read_arrays(out, ATTACK_SCHEMA)
    wrong = arrays["pred_clean"] != arrays["y"]
    assert wrong.sum() >= 10
    np.testing.assert_array_equal(arrays["success_label"], arrays["pred_adv"] != arrays["y"])
    moved = arrays["pred_adv"] != arrays["pred_clean"]
    np.testing.assert_array_equal(arrays["success"], moved)
    both = stored_success(attrs, arrays)
    np.testing.assert_array_equal(both["prediction"], moved)
    np.testing.assert_array_equal(both["label"], arrays["success_label"])

    summaries = {against: ev.evaluate(model, meta, path, [out], limit=30,
                                      data_dir=fake_data_dir, sensitivity=False,
                                      distance=False, success_against=against).summary
                 for against in metrics.SUCCESS_DEFINITIONS}
    default = ev.evaluate(model, meta, path, [out], limit=30, data_dir=fake_data_dir,
                          sensitivity=False, distance=False).summary
    assert default["artifacts"][0]["robustness"] == \
        summaries["prediction"]["artifacts"][0]["robustness"]
    entry = summaries["prediction"]["artifacts"][0]
    assert entry["success_rate"] == pytest.approx(moved.mean())
    assert entry["success_rate_label"] == pytest.approx(arrays["success_label"].mean())
    assert entry["robustness"]["count"] == moved.sum()
    assert summaries["label"]["artifacts"][0]["robustness"]["count"] == \
        (arrays["pred_adv"] != arrays["y"]).sum()
    with pytest.raises(ParameterError, match=r"^success must be judged against one of "
                                             r"prediction, label, got 'truth'$"):
        ev.evaluate(model, meta, path, [out], success_against="truth")


def test_old_artifacts_of_the_label_form_stay_readable():
    arrays = {"pred_adv": np.array([1, 0, 2]), "pred_clean": np.array([1, 1, 1]),
              "y": np.array([0, 1, 1]), "success": np.array([True, True, True]),
              "target": np.full(3, -1)}
    both = stored_success({"targeted": False}, arrays)
    np.testing.assert_array_equal(both["prediction"], [False, True, True])
    np.testing.assert_array_equal(both["label"], [True, True, True])
