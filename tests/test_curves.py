"""Tests for advbench.run.curves: eps grids, the one-gradient sweep against FGSM / Random+FGSM run
separately at each eps, black-box sweeps, curve artifacts and their reuse, plots."""

import keras
import numpy as np
import pytest

from advbench import data
from advbench.attacks.fgsm import FGSM
from advbench.attacks.rand_fgsm import RandomFGSM
from advbench.core.errors import ArtifactError, ParameterError
from advbench.data import batch_seed
from advbench.models.zoo import predict_labels
from advbench.run import curves
from advbench.score import report


# -- eps grids ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("0.1", (0.1,)),
    ("0.1, 0.3,0.2", (0.1, 0.3, 0.2)),
    ("0:0.3:0.1", (0.0, 0.1, 0.2, 0.3)),
    ("0.05:0.2:0.05", (0.05, 0.1, 0.15, 0.2)),
    ("0:0.25:0.1", (0.0, 0.1, 0.2)),
    (0.3, (0.3,)),
])
def test_parse_eps(text, expected):
    assert curves.parse_eps(text) == expected


def test_parse_eps_paper_range_includes_the_end():
    values = curves.parse_eps("0.01:1:0.01")
    assert len(values) == 100
    assert values[0] == 0.01 and values[6] == 0.07 and values[-1] == 1.0


@pytest.mark.parametrize("text, match", [
    ("abc", "is not a number"),
    ("0.1,,0.2", "is not a number"),
    ("0:1", "is not start:stop:step"),
    ("1:0:0.1", r"ends \(0.0\) before it starts"),
    ("0:1:0", "the step must be > 0"),
    ("0:1:1e-9", "more than 10000"),
    ("-0.1", "must be finite and >= 0"),
    ("0.1,0.1", "repeats a value"),
])
def test_parse_eps_errors(text, match):
    with pytest.raises(ParameterError, match=match):
        curves.parse_eps(text)


# -- the sweep ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples(fake_data_dir):
    x, y, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=30)
    return x, y


@pytest.fixture(scope="module")
def other_model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_sweep_equals_fgsm_run_at_each_eps(trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    eps = (0.0, 0.05, 0.1, 0.3)
    out = curves.sweep(model, [model], x, y, eps, batch_size=16)
    assert out["pred_adv"].shape == (1, 4, 30) and out["pred_adv"].dtype == np.uint8
    np.testing.assert_array_equal(out["pred_clean"][0], predict_labels(model, x))
    for k, value in enumerate(eps):
        x_adv = FGSM(eps=value)(model, x, y).x_adv
        np.testing.assert_array_equal(out["pred_adv"][0, k], predict_labels(model, x_adv))
    accuracy = (out["pred_adv"][0] == y).mean(axis=1)
    assert accuracy[0] == (predict_labels(model, x) == y).mean()
    assert accuracy[-1] < accuracy[0]  # the attack works on the tiny CNN


def test_sweep_l2_equals_fgsm_l2(trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    out = curves.sweep(model, [model], x, y, (1.0, 3.0), norm="l2", batch_size=64)
    for k, value in enumerate((1.0, 3.0)):
        x_adv = FGSM(eps=value, norm="l2")(model, x, y).x_adv
        np.testing.assert_array_equal(out["pred_adv"][0, k], predict_labels(model, x_adv))


def test_sweep_black_box_scores_targets_on_source_direction(trained_tiny_cnn, samples,
                                                           other_model):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    out = curves.sweep(model, [other_model, model], x, y, (0.1, 0.2), batch_size=32)
    for k, value in enumerate((0.1, 0.2)):
        x_adv = FGSM(eps=value)(model, x, y).x_adv
        np.testing.assert_array_equal(out["pred_adv"][0, k], predict_labels(other_model, x_adv))
        np.testing.assert_array_equal(out["pred_adv"][1, k], predict_labels(model, x_adv))


def test_sweep_equals_rand_fgsm_run_per_batch(trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    eps, alpha, seed, batch = (0.05, 0.1, 0.3), 0.05, 7, 16
    out = curves.sweep(model, [model], x, y, eps, attack="rand-fgsm", alpha=alpha, seed=seed,
                       batch_size=batch)
    for k, value in enumerate(eps):
        attack = RandomFGSM(eps=value, alpha=alpha)
        x_adv = np.concatenate([
            attack(model, x[s:s + batch], y[s:s + batch], seed=batch_seed(seed, s)).x_adv
            for s in range(0, len(x), batch)])
        np.testing.assert_array_equal(out["pred_adv"][0, k], predict_labels(model, x_adv))


def test_sweep_rand_fgsm_below_alpha_is_noise_only(trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    out = curves.sweep(model, [model], x, y, (0.0,), attack="rand-fgsm", alpha=0.05)
    np.testing.assert_array_equal(out["pred_adv"][0, 0], predict_labels(model, x))


@pytest.mark.parametrize("kwargs, match", [
    ({"attack": "deepfool"}, "curves are computed for fgsm, rand-fgsm"),
    ({"attack": "rand-fgsm", "norm": "l2"}, "norm must be linf"),
    ({"eps": ()}, "non-empty list"),
    ({"eps": (-0.1,)}, "finite values >= 0"),
    ({"batch_size": 0}, "batch size must be >= 1"),
    ({"alpha": -1.0}, "alpha must be >= 0"),
])
def test_sweep_errors(trained_tiny_cnn, samples, kwargs, match):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    kwargs = {"eps": (0.1,), **kwargs}
    eps = kwargs.pop("eps")
    with pytest.raises(ParameterError, match=match):
        curves.sweep(model, [model], x, y, eps, **kwargs)


def test_sweep_needs_a_target(trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    with pytest.raises(ParameterError, match="at least one model"):
        curves.sweep(model, [], *samples, (0.1,))


# -- artifacts ------------------------------------------------------------------------------
def test_run_curve_writes_compact_artifact_and_reuses_it(trained_tiny_cnn, fake_data_dir,
                                                         tmp_path, monkeypatch):
    path, model, meta = trained_tiny_cnn
    run = curves.CurveRun(dataset="mnist", limit=20, data_dir=str(fake_data_dir))
    source = (path, model, meta)
    eps = curves.parse_eps("0:0.2:0.1")
    out, reused = curves.run_curve(run, source, [source], eps, runs_dir=tmp_path)
    assert not reused and out.parent == tmp_path
    curve = curves.read_curve(out)
    assert curve.pred_adv.shape == (1, 3, 20) and curve.pred_adv.dtype == np.uint8
    np.testing.assert_array_equal(curve.eps, [0.0, 0.1, 0.2])
    x, y, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=20)
    expected = [(predict_labels(model, FGSM(eps=e)(model, x, y).x_adv) == y).mean() for e in eps]
    np.testing.assert_allclose(curve.accuracy[0], expected)
    summary = curve.summary()
    assert summary["targets"][0]["setting"] == "white-box"
    assert summary["eps"] == [0.0, 0.1, 0.2]

    def fail(*args, **kwargs):
        raise AssertionError("the sweep ran again")

    monkeypatch.setattr(curves, "sweep", fail)
    again, reused = curves.run_curve(run, source, [source], eps, runs_dir=tmp_path)
    assert reused and again == out
    with pytest.raises(ArtifactError, match="holds a curve with other parameters, model or "
                                            "samples; pass --overwrite"):
        curves.run_curve(run, source, [source], (0.3, 0.4), output=out, runs_dir=tmp_path)


def test_run_curve_refuses_a_model_of_other_inputs(trained_tiny_cnn, fake_data_dir, tmp_path):
    path, model, meta = trained_tiny_cnn
    inputs = keras.Input((8, 8, 1))
    small = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    run = curves.CurveRun(dataset="mnist", limit=10, data_dir=str(fake_data_dir))
    with pytest.raises(ArtifactError, match=r"takes inputs of shape \(8, 8, 1\)"):
        curves.run_curve(run, (path, model, meta), [("small.h5", small, {})], (0.1, 0.2),
                         runs_dir=tmp_path)


def test_read_curve_rejects_other_artifacts(tmp_path):
    from advbench.run.artifacts import ATTACK_SCHEMA, write_arrays

    path = tmp_path / "a.h5"
    write_arrays(path, ATTACK_SCHEMA, {}, {"x": np.zeros(3)})
    with pytest.raises(ArtifactError, match="expected a 'advbench.curve' artifact"):
        curves.read_curve(path)


def test_plot_curves_writes_png(tmp_path):
    lines = report.curve_lines([{
        "path": "c.h5", "attack": "fgsm", "source": {"name": "cnn"}, "eps": [0.0, 0.1, 0.2],
        "targets": [{"name": "cnn", "setting": "white-box", "clean_accuracy": 1.0,
                     "accuracy": [1.0, 0.5, 0.1]},
                    {"name": "resnet", "setting": "black-box", "clean_accuracy": 0.9,
                     "accuracy": [0.9, 0.8, 0.6]}]}])
    assert [line["label"] for line in lines] == ["fgsm: cnn -> cnn (white-box)",
                                                 "fgsm: cnn -> resnet"]
    out = report.plot_curves(lines, tmp_path / "sub" / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_a_curve_is_a_project_error(tmp_path):
    with pytest.raises(ParameterError, match=r"^no curve to plot; give an eps list "
                                             r"\(--eps 0.01:1:0.01\)$"):
        report.plot_curves([], tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_curve_options_refuse_other_attacks():
    from advbench import stages
    from advbench.core.errors import OptionError

    with pytest.raises(OptionError, match=r"^an eps list draws a curve, which only fgsm and "
                                          r"rand-fgsm compute; give one --eps value for "
                                          r"--attack deepfool$"):
        stages.curves_from_options("deepfool", {"eps": (0.1, 0.2)}, ["cnn"], ["cnn"],
                                   batch_size=8)


def test_curve_attacks_are_registered_attacks():
    from advbench.attacks import ATTACKS

    assert set(curves.CURVE_ATTACKS) <= set(ATTACKS)
