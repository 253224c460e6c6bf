"""Tests for advbench.run.metrics: hand-computed values on tiny arrays, brute force for the
nearest-neighbour search, batch-size invariance for loss sensitivity, every error path."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from advbench.core.errors import AdvbenchError, ParameterError
from advbench.run import metrics


# -- accuracy and success rate ------------------------------------------------------------
def test_accuracy_from_class_indices():
    assert metrics.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75


def test_accuracy_from_scores_takes_argmax():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.1, 0.2]])
    assert metrics.accuracy(logits, np.array([0, 2, 0])) == pytest.approx(2 / 3)


def test_attack_success_rate():
    assert metrics.attack_success_rate(np.array([True, False, True, True])) == 0.75
    assert metrics.attack_success_rate(np.array([0, 0, 1, 0])) == 0.25


@pytest.mark.parametrize("predictions, labels, match", [
    (np.array([0, 1]), np.array([0, 1, 1]), "labels has 3 entries but expected 2"),
    (np.array([], dtype=int), np.array([], dtype=int), "predictions is empty"),
    (np.array([[np.nan, 1.0]]), np.array([0]), "predictions contains 1 NaN"),
    (np.array([0, 1]), np.array([[1, 0], [0, 1]]), "for one-hot labels pass labels.argmax"),
    (np.array([0.5, 1.0]), np.array([0, 1]), "predictions must be integer class indices"),
    (np.array([0, 1]), np.array([0, -1]), "labels must be >= 0"),
    (np.zeros((2, 2, 2)), np.array([0, 1]), r"predictions must have shape \(n,\) or"),
])
def test_accuracy_errors(predictions, labels, match):
    with pytest.raises(AdvbenchError, match=match):
        metrics.accuracy(predictions, labels)


@pytest.mark.parametrize("success, match", [
    (np.array([], dtype=bool), "success is empty"),
    (np.array([0, 2]), "success must be booleans"),
    (np.array([[True]]), r"success must have shape \(n,\)"),
    ("yes", "success must have at least 1 dimension"),
])
def test_attack_success_rate_errors(success, match):
    with pytest.raises(AdvbenchError, match=match):
        metrics.attack_success_rate(success)


# -- perturbation norms --------------------------------------------------------------------
def test_perturbation_norms_hand_values():
    x = np.zeros((2, 2, 2, 1), np.float32)
    x[0] = 0.5
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] = 0.8
    x_adv[0, 1, 1, 0] = 0.1
    x_adv[1, 0, 1, 0] = 1e-7  # below the L0 tolerance: round-off, not a change
    norms = metrics.perturbation_norms(x, x_adv)
    np.testing.assert_array_equal(norms["l0"], [2, 0])
    np.testing.assert_allclose(norms["l2"], [0.5, 1e-7], rtol=1e-6)
    np.testing.assert_allclose(norms["linf"], [0.4, 1e-7], rtol=1e-6)


def test_perturbation_norms_count_channels_not_pixels():
    x = np.zeros((1, 1, 1, 3), np.float32)
    x_adv = np.full_like(x, 0.1)
    assert metrics.perturbation_norms(x, x_adv)["l0"][0] == 3


def test_perturbation_norms_tolerance_option():
    x = np.zeros((1, 3))
    x_adv = np.array([[0.01, 0.02, 0.5]])
    assert metrics.perturbation_norms(x, x_adv, tolerance=0.015)["l0"][0] == 2


@pytest.mark.parametrize("x_adv, match", [
    (np.zeros((2, 3)), r"x has shape \(2, 4\) but x_adv has shape \(2, 3\)"),
    (np.full((2, 4), np.nan), "x_adv contains 8 NaN"),
    (np.zeros(4), r"x_adv must have shape \(n, ...\) with at least 2 dimensions, got shape "
                  r"\(4,\)"),
])
def test_perturbation_norms_errors(x_adv, match):
    with pytest.raises(AdvbenchError, match=match):
        metrics.perturbation_norms(np.zeros((2, 4)), x_adv)


def test_perturbation_norms_bad_tolerance():
    with pytest.raises(ParameterError, match="tolerance must be a number >= 0, got -1"):
        metrics.perturbation_norms(np.zeros((1, 2)), np.zeros((1, 2)), tolerance=-1)


def test_norm_summary_over_successful_samples_only():
    norms = {"l2": np.array([1.0, 100.0, 3.0, 4.0]), "linf": np.array([0.1, 9.0, 0.3, 0.2])}
    summary = metrics.norm_summary(norms, np.array([True, False, True, True]))
    assert summary["l2_mean"] == pytest.approx(8 / 3)
    assert summary["l2_median"] == 3.0
    assert summary["linf_mean"] == pytest.approx(0.2)
    assert summary["linf_median"] == pytest.approx(0.2)
    assert (summary["count"], summary["total"]) == (3, 4)


def test_norm_summary_is_nan_when_nothing_succeeds():
    summary = metrics.norm_summary({"l2": np.array([1.0, 2.0])}, np.array([False, False]))
    assert math.isnan(summary["l2_mean"]) and math.isnan(summary["l2_median"])
    assert summary["count"] == 0


def test_success_summary_hand_values():
    summary = metrics.success_summary(np.array([1.0, 5.0, 3.0]), np.array([1, 0, 1]))
    assert summary == {"mean": 2.0, "median": 2.0, "count": 2, "total": 3}


@pytest.mark.parametrize("norms, success, match", [
    ({}, np.array([True]), "norms must be a non-empty dict"),
    ({"l2": np.array([1.0, 2.0])}, np.array([True]),
     "norm 'l2': success has 1 entries but there are 2 samples"),
    ({"l2": np.array([np.nan])}, np.array([True]), "norm 'l2': values contains 1 NaN"),
    ({"l2": np.ones((2, 2))}, np.array([True, True]), r"values must have shape \(n,\)"),
])
def test_norm_summary_errors(norms, success, match):
    with pytest.raises(AdvbenchError, match=match):
        metrics.norm_summary(norms, success)


# -- empirical robustness ------------------------------------------------------------------
def _robustness_example():
    # Sample 0: x = (0.5, 1.0), dx = (0.2, 0)       -> linf 0.2/1.0, l2 0.2/sqrt(1.25)
    # Sample 1: x = (0.0, 0.5), dx = (0.1, -0.1)    -> linf 0.1/0.5, l2 sqrt(.02)/0.5
    # Sample 2: failed, huge dx: must not count.
    x = np.array([[0.5, 1.0], [0.0, 0.5], [0.5, 0.5]])
    x_adv = np.array([[0.7, 1.0], [0.1, 0.4], [1.0, 0.0]])
    return x, x_adv, np.array([True, True, False])


def test_empirical_robustness_linf_hand_example():
    x, x_adv, success = _robustness_example()
    result = metrics.empirical_robustness(x, x_adv, success, norm="linf")
    assert result.value == pytest.approx((0.2 / 1.0 + 0.1 / 0.5) / 2)
    assert (result.norm, result.count, result.total) == ("linf", 2, 3)
    assert result.success_rate == pytest.approx(2 / 3)


def test_empirical_robustness_l2_hand_example():
    x, x_adv, success = _robustness_example()
    result = metrics.empirical_robustness(x, x_adv, success, norm="l2")
    expected = (0.2 / math.sqrt(1.25) + math.sqrt(0.02) / 0.5) / 2
    assert result.value == pytest.approx(expected)
    assert result.norm == "l2"


def test_empirical_robustness_matches_art_formula_on_images():
    # ART 1.20.1: mean over changed predictions of la.norm(dx, ord) / la.norm(x, ord).
    rng = np.random.default_rng(3)
    x = rng.random((6, 4, 4, 1)).astype(np.float32)
    x_adv = np.clip(x + 0.1 * np.sign(rng.normal(size=x.shape)), 0, 1).astype(np.float32)
    success = np.array([True, False, True, True, False, True])
    flat, delta = x.reshape(6, -1), (x_adv - x).reshape(6, -1)
    art = np.mean(np.linalg.norm(delta[success], ord=np.inf, axis=1)
                  / np.linalg.norm(flat[success], ord=np.inf, axis=1))
    result = metrics.empirical_robustness(x, x_adv, success)
    assert result.value == pytest.approx(art, rel=1e-6)


def test_empirical_robustness_nan_when_nothing_succeeds():
    x, x_adv, _ = _robustness_example()
    result = metrics.empirical_robustness(x, x_adv, np.zeros(3, bool))
    assert math.isnan(result.value)
    assert (result.count, result.success_rate) == (0, 0.0)


def test_empirical_robustness_errors():
    x, x_adv, success = _robustness_example()
    with pytest.raises(ParameterError, match="norm must be one of l0, l1, l2, linf, got 'l3'"):
        metrics.empirical_robustness(x, x_adv, success, norm="l3")
    with pytest.raises(AdvbenchError, match="success has 2 entries but there are 3 samples"):
        metrics.empirical_robustness(x, x_adv, success[:2])
    with pytest.raises(AdvbenchError, match=r"x has shape \(3, 2\) but x_adv has shape"):
        metrics.empirical_robustness(x, x_adv[:, :1], success)
    blank = x.copy()
    blank[1] = 0.0
    with pytest.raises(AdvbenchError, match=r"x\[1\] has zero linf norm"):
        metrics.empirical_robustness(blank, x_adv, success)


# -- nearest training distance -------------------------------------------------------------
def _brute_force(x_query, x_train):
    diff = x_query.reshape(len(x_query), 1, -1).astype(np.float64) \
        - x_train.reshape(1, len(x_train), -1).astype(np.float64)
    return np.sum(diff * diff, axis=-1)


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 50, 1000])
def test_nearest_training_distance_matches_brute_force(chunk_size):
    rng = np.random.default_rng(chunk_size)
    x_query = rng.random((43, 5, 5, 2), dtype=np.float32)  # 43, 97: prime, no chunk divides
    x_train = rng.random((97, 5, 5, 2), dtype=np.float32)
    squared = _brute_force(x_query, x_train)
    distances, indices = metrics.nearest_training_distance(
        x_query, x_train, chunk_size=chunk_size)
    np.testing.assert_array_equal(indices, squared.argmin(axis=1))
    np.testing.assert_allclose(distances, np.sqrt(squared.min(axis=1)), rtol=1e-12)
    assert distances.dtype == np.float64 and indices.dtype == np.int64


def test_nearest_training_distance_block_cap(monkeypatch):
    # A chunk larger than both sets with a tiny block cap: the training side of each block
    # shrinks (here to 2 rows), and the result must not change.
    monkeypatch.setattr(metrics, "_MAX_BLOCK_ENTRIES", 50)
    rng = np.random.default_rng(5)
    x_query, x_train = rng.random((29, 6)), rng.random((41, 6))
    squared = _brute_force(x_query, x_train)
    distances, indices = metrics.nearest_training_distance(x_query, x_train, chunk_size=10_000)
    np.testing.assert_array_equal(indices, squared.argmin(axis=1))
    np.testing.assert_allclose(distances, np.sqrt(squared.min(axis=1)), rtol=1e-12)


def test_nearest_training_distance_exact_for_duplicates_and_offsets():
    # Queries equal to training images (distance exactly 0, either duplicate may win) and
    # images far from the origin, where the float32 expansion alone loses digits.
    rng = np.random.default_rng(0)
    x_train = (0.9 + 0.1 * rng.random((20, 8))).astype(np.float32)
    x_train[13] = x_train[4]
    x_query = np.concatenate([x_train[[4, 7]], x_train[[2]] - np.float32(1e-3)])
    distances, indices = metrics.nearest_training_distance(x_query, x_train, chunk_size=3)
    assert indices[0] in (4, 13)
    np.testing.assert_array_equal(indices[1:], [7, 2])
    np.testing.assert_array_equal(distances[:2], [0.0, 0.0])
    exact = np.linalg.norm(x_query[2].astype(np.float64) - x_train[2].astype(np.float64))
    assert distances[2] == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("variant", ["l2", "paper"])
@pytest.mark.parametrize("count", [1, 2, 3, 9])
def test_nearest_training_distance_shards_are_blocks_of_the_whole(variant, count):
    # 43 queries in blocks of 10 (the last of 3 rows; training blocks of 7): shard I/N holds
    # blocks I, I+N, ..., with exactly the values of the whole computation; other rows NaN
    # and -1.
    rng = np.random.default_rng(count)
    x_query, x_train = rng.random((43, 4, 4, 1)), rng.random((97, 4, 4, 1))
    whole = metrics.nearest_training_distance(x_query, x_train, chunk_size=7, query_chunk=10,
                                              variant=variant)
    np.testing.assert_array_equal(whole[1], _brute_force(x_query, x_train).argmin(axis=1))
    seen = np.zeros(43, int)
    for index in range(count):
        blocks = metrics.query_blocks(43, 10, (index, count))
        assert blocks == [slice(s, min(s + 10, 43)) for s in range(10 * index, 43, 10 * count)]
        distances, indices = metrics.nearest_training_distance(
            x_query, x_train, chunk_size=7, query_chunk=10, variant=variant,
            shard=(index, count))
        rows = np.zeros(43, bool)
        for block in blocks:
            rows[block] = True
        seen += rows
        np.testing.assert_array_equal(distances[rows], whole[0][rows])
        np.testing.assert_array_equal(indices[rows], whole[1][rows])
        assert np.isnan(distances[~rows]).all() and (indices[~rows] == -1).all()
    assert (seen == 1).all()
    assert metrics.query_blocks(5, 2048) == [slice(0, 5)]
    with pytest.raises(ParameterError, match=r"shard must be \(I, N\) with 0 <= I < N, got "
                                             r"\(2, 2\)"):
        metrics.query_blocks(5, 2, (2, 2))


def test_nearest_training_distance_paper_variant():
    x_train = np.array([[0.0, 0.0], [0.6, 0.8]], np.float32)
    x_query = np.array([[0.6, 0.0], [0.0, 0.4]], np.float32)
    # Query 0: nearest [0, 0] at 0.6 ([0.6, 0.8] is at 0.8): 0.36 / ||q|| = 0.36 / 0.6.
    # Query 1: nearest [0, 0] at 0.4: 0.16 / 0.4.
    distances, indices = metrics.nearest_training_distance(x_query, x_train, variant="paper")
    np.testing.assert_array_equal(indices, [0, 0])
    np.testing.assert_allclose(distances, [0.6, 0.4], rtol=1e-6)
    x_clean = np.array([[0.0, 0.2], [0.8, 0.6]], np.float32)
    distances, _ = metrics.nearest_training_distance(
        x_query, x_train, variant="paper", x_clean=x_clean)
    np.testing.assert_allclose(distances, [0.36 / 0.2, 0.16 / 1.0], rtol=1e-6)


def test_nearest_training_distance_errors():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ParameterError, match="variant must be one of l2, paper, got 'l1'"):
        metrics.nearest_training_distance(x, x, variant="l1")
    with pytest.raises(ParameterError, match="chunk_size must be >= 1, got 0"):
        metrics.nearest_training_distance(x, x, chunk_size=0)
    with pytest.raises(ParameterError, match="chunk_size must be an integer, got 2.5"):
        metrics.nearest_training_distance(x, x, chunk_size=2.5)
    with pytest.raises(AdvbenchError, match=r"x_query images have shape \(4,\) but x_train"):
        metrics.nearest_training_distance(x, np.ones((3, 5)))
    with pytest.raises(AdvbenchError, match="x_train is empty"):
        metrics.nearest_training_distance(x, np.ones((0, 4)))
    with pytest.raises(AdvbenchError, match="x_query contains 1 NaN"):
        metrics.nearest_training_distance(np.where(np.eye(3, 4) == 1, np.nan, 0.0)[:1], x)
    with pytest.raises(ParameterError, match="x_clean is only used by variant='paper'"):
        metrics.nearest_training_distance(x, x, x_clean=x)
    with pytest.raises(AdvbenchError, match=r"x_query has shape \(3, 4\) but x_clean"):
        metrics.nearest_training_distance(x, x, variant="paper", x_clean=x[:2])
    with pytest.raises(AdvbenchError, match=r"x_query\[0\] has zero L2 norm"):
        metrics.nearest_training_distance(np.zeros((1, 4)), x, variant="paper")


# -- loss sensitivity ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear_model():
    """Dense logits on 4x4x1 images with known weights: the gradient has a closed form."""
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.layers[-1].set_weights([rng.normal(size=(16, 3)).astype(np.float32),
                                  rng.normal(size=3).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(5)])


def test_loss_sensitivity_per_sample_closed_form(linear_model):
    # J = logsumexp(Wx + b) - (Wx + b)_y, so dJ/dx = W (softmax(Wx + b) - onehot(y)).
    rng = np.random.default_rng(2)
    x = rng.random((5, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1])
    kernel, bias = (w.astype(np.float64) for w in linear_model.layers[-1].get_weights())
    logits = x.reshape(5, -1) @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    expected = np.linalg.norm((probabilities - np.eye(3)[y]) @ kernel.T, axis=1)
    got = metrics.loss_sensitivity_per_sample(linear_model, x, y, batch_size=2)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert metrics.loss_sensitivity(linear_model, x, y) == pytest.approx(expected.mean(),
                                                                         rel=1e-5)


def test_loss_sensitivity_authors_variants_closed_form(linear_model):
    # The authors' code (ART 735ead0c0 / tag 0.1) differentiated the predicted class c's
    # softmax output, d p_c / dx = p_c W (onehot(c) - p), or its logit, d z_c / dx = W_c.
    rng = np.random.default_rng(3)
    x = rng.random((6, 4, 4, 1)).astype(np.float32)
    kernel, bias = (w.astype(np.float64) for w in linear_model.layers[-1].get_weights())
    logits = x.reshape(6, -1) @ kernel + bias
    predicted = logits.argmax(1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p_c = p[np.arange(6), predicted][:, None]
    softmax = np.linalg.norm(p_c * (np.eye(3)[predicted] - p) @ kernel.T, axis=1)
    logit = np.linalg.norm(kernel.T[predicted], axis=1)
    labels = (predicted + 1) % 3  # never used by these variants
    for variant, expected in (("softmax", softmax), ("logit", logit)):
        got = metrics.loss_sensitivity_per_sample(linear_model, x, labels, batch_size=4,
                                                  variant=variant)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        without_labels = metrics.loss_sensitivity(linear_model, x, None, variant=variant)
        assert without_labels == pytest.approx(expected.mean(), rel=1e-5)
    # ... and neither is the loss's gradient (the paper's text), which the default keeps.
    loss = metrics.loss_sensitivity_per_sample(linear_model, x, predicted)
    assert not np.allclose(loss, softmax) and not np.allclose(loss, logit)
    assert metrics.SENSITIVITY_VARIANTS == ("loss", "softmax", "logit")


def test_loss_sensitivity_variant_errors(linear_model):
    x = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(ParameterError) as error:
        metrics.loss_sensitivity(linear_model, x, np.array([0, 1]), variant="gradient")
    assert str(error.value) == ("sensitivity variant must be one of loss, softmax, logit, "
                                "got 'gradient'")
    with pytest.raises(ParameterError) as error:
        metrics.loss_sensitivity(linear_model, x, None)
    assert str(error.value) == ("the loss variant of loss sensitivity needs the labels y; pass "
                                "them, or choose variant softmax or logit")


def test_loss_sensitivity_same_for_any_batch_size(conv_model):
    rng = np.random.default_rng(4)
    x = rng.random((64, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    values = [metrics.loss_sensitivity(conv_model, x, y, batch_size=b) for b in (1, 7, 64)]
    assert values[0] > 0
    np.testing.assert_allclose(values[1:], values[0], rtol=1e-5)


def test_loss_sensitivity_errors(linear_model):
    x = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(ParameterError, match="batch_size must be >= 1, got 0"):
        metrics.loss_sensitivity(linear_model, x, np.array([0, 1]), batch_size=0)
    with pytest.raises(AdvbenchError, match="y has 1 entries but expected 2"):
        metrics.loss_sensitivity(linear_model, x, np.array([0]))
    with pytest.raises(AdvbenchError, match=r"for one-hot labels pass y\.argmax\(axis=1\)"):
        metrics.loss_sensitivity(linear_model, x, np.eye(3)[[0, 1]])
    with pytest.raises(AdvbenchError, match="x contains 32 NaN"):
        metrics.loss_sensitivity(linear_model, np.full_like(x, np.nan), np.array([0, 1]))


def test_loss_sensitivity_rejects_non_finite_gradients():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2),
                              keras.layers.Lambda(lambda t: tf.math.log(t * 0.0))])
    with pytest.raises(AdvbenchError, match="NaN or infinite loss gradients"):
        metrics.loss_sensitivity(model, np.ones((2, 2), np.float32), np.array([0, 1]))
