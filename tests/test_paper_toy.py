import json

import matplotlib.image
import numpy as np
import pytest

from advbench.core.errors import ParameterError
from advbench.paper.toy import (AUGMENTATIONS, GAUSSIAN_SIGMA, TOY_DATASETS, UNIFORM_HALF_WIDTH,
                          augment, make_toy_data, run_toy, train_mlp)

METRIC_KEYS = {"added_points", "mean_shift", "moved_fraction", "train_accuracy",
               "test_accuracy", "test_loss_sensitivity", "grid_max_slope",
               "grid_mean_confidence", "grid_confident_area"}


@pytest.mark.parametrize("dataset", sorted(TOY_DATASETS))
@pytest.mark.parametrize("n", [2, 51, 300])
def test_data_shapes_range_and_balanced_labels(dataset, n):
    x, y = make_toy_data(dataset, n, seed=0)
    assert x.shape == (n, 2, 1, 1) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert sorted(np.bincount(y, minlength=2)) == [n // 2, n - n // 2]


@pytest.mark.parametrize("dataset", sorted(TOY_DATASETS))
def test_data_is_deterministic_per_seed(dataset):
    x1, y1 = make_toy_data(dataset, 100, seed=3)
    x2, y2 = make_toy_data(dataset, 100, seed=3)
    x3, _ = make_toy_data(dataset, 100, seed=4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_circles_put_class_one_inside_class_zero():
    x, y = make_toy_data("circles", 400, seed=0)
    radius = np.linalg.norm(x.reshape(-1, 2) - 0.5, axis=1)
    # Outer radius 0.4, inner 0.2 (factor 0.5), noise std 0.05 * 0.4.
    assert abs(np.median(radius[y == 0]) - 0.4) < 0.01
    assert abs(np.median(radius[y == 1]) - 0.2) < 0.01


def test_moons_put_class_zero_above_class_one():
    x, y = make_toy_data("moons", 400, seed=0)
    points = x.reshape(-1, 2)
    assert points[y == 0, 1].mean() > points[y == 1, 1].mean() + 0.1
    assert points[y == 0, 0].mean() < points[y == 1, 0].mean()


@pytest.fixture(scope="module")
def clean_setup():
    x, y = make_toy_data("circles", 80, seed=0)
    return train_mlp(x, y, seed=0, epochs=30), x, y


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS if n != "none"])
def test_augmentation_adds_one_point_per_original_in_the_unit_square(clean_setup, name):
    model, x, y = clean_setup
    added = augment(name, model, x, y, seed=0)
    assert added.shape == x.shape and added.dtype == np.float32
    assert added.min() >= 0.0 and added.max() <= 1.0
    np.testing.assert_array_equal(added, augment(name, model, x, y, seed=0))


def test_no_augmentation_adds_nothing(clean_setup):
    model, x, y = clean_setup
    assert augment("none", model, x, y).shape == (0, 2, 1, 1)


@pytest.mark.parametrize("name", ["fgsm", "vat"])
def test_adversarial_shift_is_at_most_eps_in_l2(clean_setup, name):
    model, x, y = clean_setup
    shift = np.linalg.norm((augment(name, model, x, y) - x).reshape(-1, 2), axis=1)
    assert shift.max() <= 0.3 + 1e-5
    # Clipping only shortens the step; points well inside the square move by exactly eps.
    inside = np.all((x.reshape(-1, 2) > 0.3) & (x.reshape(-1, 2) < 0.7), axis=1)
    np.testing.assert_allclose(shift[inside], 0.3, atol=1e-4)


def test_jsma_moves_both_coordinates_up_in_steps_of_theta(clean_setup):
    model, x, y = clean_setup
    delta = (augment("jsma", model, x, y) - x).reshape(-1, 2)
    assert delta.min() >= -1e-6 and delta.max() >= 0.1 - 1e-6
    # Two features form the only pair: both move by the same k * 0.1 unless one hit 1.
    unclipped = np.all(x.reshape(-1, 2) + delta < 1.0 - 1e-6, axis=1)
    np.testing.assert_allclose(delta[unclipped, 0], delta[unclipped, 1], atol=1e-5)
    steps = delta[unclipped, 0] / 0.1
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)


@pytest.mark.parametrize("name, expected_median", [
    # The median of |x' - x| per coordinate is untouched by clipping at distance >= 0.5.
    ("gaussian", 0.6745 * GAUSSIAN_SIGMA),
    ("uniform", UNIFORM_HALF_WIDTH / 2),
])
def test_random_augmentation_spread(name, expected_median):
    x = np.full((5000, 2, 1, 1), 0.5, np.float32)
    y = np.zeros(5000, np.int64)
    deviation = np.abs(augment(name, None, x, y, seed=1) - x)
    assert abs(np.median(deviation) - expected_median) < 0.01
    if name == "uniform":
        assert deviation.max() <= UNIFORM_HALF_WIDTH + 1e-6


def test_train_mlp_is_deterministic(clean_setup):
    _, x, y = clean_setup
    a = train_mlp(x, y, seed=5, epochs=2)
    b = train_mlp(x, y, seed=5, epochs=2)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_run_toy_writes_the_figure_and_metrics_for_every_augmentation(tmp_path):
    result = run_toy("moons", tmp_path, seed=0, epochs=3, n_train=40, n_test=50)
    image = matplotlib.image.imread(result["png"])
    # 3 columns x 2 rows at 4.4 x 4.7 inches plus 0.9 inch of legend, 100 dpi.
    assert image.shape[:2] == (1030, 1320)
    assert set(result["panels"]) == set(AUGMENTATIONS)
    for name, metrics in result["panels"].items():
        assert set(metrics) == METRIC_KEYS
        assert metrics["added_points"] == (0 if name == "none" else 40)
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert 0.5 <= metrics["grid_mean_confidence"] <= 1.0
    saved = json.loads((tmp_path / "toy-moons.json").read_text())
    assert saved["panels"] == result["panels"]


def test_run_toy_always_trains_the_clean_reference_first(tmp_path):
    result = run_toy("circles", tmp_path, epochs=1, n_train=20, n_test=20,
                     augmentations=["fgsm", "none", "fgsm"])
    assert list(result["panels"]) == ["none", "fgsm"]
    assert matplotlib.image.imread(result["png"]).shape[:2] == (560, 1320)


@pytest.mark.parametrize("call, message", [
    (lambda tmp: make_toy_data("spirals", 10, 0), r"unknown toy data set 'spirals'; choose"),
    (lambda tmp: make_toy_data("moons", 1, 0), r"at least 2 points .*got 1"),
    (lambda tmp: augment("mixup", None, np.zeros((2, 2, 1, 1), np.float32), np.zeros(2)),
     r"unknown augmentation 'mixup'; choose one of: none, fgsm"),
    (lambda tmp: run_toy("spirals", tmp), r"unknown toy data set 'spirals'"),
    (lambda tmp: run_toy("moons", tmp, augmentations=["gaussian", "mixup"]),
     r"unknown augmentation\(s\) 'mixup'; choose from"),
    (lambda tmp: train_mlp(np.zeros((2, 2, 1, 1)), np.zeros(2), epochs=0),
     r"epochs must be >= 1, got 0"),
    (lambda tmp: train_mlp(np.zeros((2, 2, 1, 1)), np.zeros(2), batch_size=0),
     r"batch size must be >= 1, got 0"),
])
def test_bad_names_and_settings_raise_one_line_errors(tmp_path, call, message):
    with pytest.raises(ParameterError, match=message) as error:
        call(tmp_path)
    assert "\n" not in str(error.value)


# 27 s on an idle core; test_paper_experiments' one-model two-seed run guards reuse and resume.
@pytest.mark.slow
def test_reproduce_reuses_a_finished_toy_run_of_the_same_settings(tmp_path, monkeypatch):
    from advbench.paper import experiments, toy

    real, calls = toy.run_toy, []

    def small(dataset, out_dir, *, epochs=2, n_train=20, n_test=20, **kwargs):
        calls.append((dataset, epochs, kwargs["seed"]))
        return real(dataset, out_dir, epochs=epochs, n_train=n_train, n_test=n_test, **kwargs)

    monkeypatch.setattr(toy, "run_toy", small)
    first = experiments.Reproduction("toy", "quick", tmp_path)
    first.run_stage("toy:moons")
    again = experiments.Reproduction("toy", "quick", tmp_path)
    again.run_stage("toy:moons")  # e.g. the report after --engine ray: nothing trained
    assert calls == [("moons", 2, 0)]
    assert again.results["toy"]["moons"] == json.loads(
        json.dumps(first.results["toy"]["moons"], default=str))
    # Another seed, other settings, or an unreadable file: trained again.
    experiments.Reproduction("toy", "quick", tmp_path, seed=1).run_stage("toy:moons")

    def other(dataset, out_dir, *, epochs=3, n_train=20, n_test=20, **kwargs):
        calls.append((dataset, epochs, kwargs["seed"]))
        return real(dataset, out_dir, epochs=epochs, n_train=n_train, n_test=n_test, **kwargs)

    monkeypatch.setattr(toy, "run_toy", other)
    experiments.Reproduction("toy", "quick", tmp_path, seed=1).run_stage("toy:moons")
    (tmp_path / "toy" / "quick" / "toy-moons.json").write_text("{not json")
    experiments.Reproduction("toy", "quick", tmp_path, seed=1).run_stage("toy:moons")
    assert calls == [("moons", 2, 0), ("moons", 2, 1), ("moons", 3, 1), ("moons", 3, 1)]
