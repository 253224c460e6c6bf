"""Tests for advbench.score.evaluate: scoring saved artifacts without re-attacking, white-box /
black-box detection, robustness and training distance, the gate, bad input, the eval artifact."""

import json
import math
import re
import shutil

import numpy as np
import pytest

from advbench import data
from advbench.attacks.fgsm import FGSM
from advbench.attacks.fgsm_min import MinimalFGSM
from advbench.core.errors import ArtifactError, ParameterError
from advbench.models.zoo import predict_labels
from advbench.run import metrics
from advbench.run.artifacts import (ATTACK_SCHEMA, EVALUATION_SCHEMA, jsonable, read_arrays,
                                    write_arrays)
from advbench.run.runner import AttackRun, attack_split
from advbench.run.shards import Shard
from advbench.score import evaluate as ev, report

LIMIT = 40


@pytest.fixture(scope="module")
def artifacts(trained_tiny_cnn, fake_data_dir, tmp_path_factory):
    """An FGSM (eps 0.1) and a minimal-FGSM artifact crafted on the tiny CNN."""
    path, model, meta = trained_tiny_cnn
    folder = tmp_path_factory.mktemp("runs")
    run = AttackRun(model_path=str(path), dataset="mnist", limit=LIMIT,
                    data_dir=str(fake_data_dir), batch_size=16)
    fgsm = attack_split(run, FGSM(eps=0.1), model, meta, folder / "fgsm.h5")
    minimal = attack_split(run, MinimalFGSM(eps_step=0.05), model, meta, folder / "min.h5")
    return {"fgsm": fgsm, "min": minimal}


@pytest.fixture(scope="module")
def other_model(dense_mnist_model):
    """A second MNIST model (dense), saved, for black-box scoring."""
    return dense_mnist_model


@pytest.fixture
def no_attacks(monkeypatch):
    """Any attempt to run an attack fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("an attack ran while scoring saved artifacts")

    monkeypatch.setattr(FGSM, "run", refuse)
    monkeypatch.setattr(FGSM, "direction", refuse)
    monkeypatch.setattr(MinimalFGSM, "run", refuse)


def test_evaluate_scores_saved_artifacts_without_attacking(trained_tiny_cnn, artifacts,
                                                          fake_data_dir, no_attacks):
    path, model, meta = trained_tiny_cnn
    result = ev.evaluate(model, meta, path, [artifacts["fgsm"], artifacts["min"]],
                         limit=LIMIT, data_dir=fake_data_dir, batch_size=7)
    summary = result.summary
    x, y, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=LIMIT)
    assert summary["clean"]["accuracy"] == pytest.approx(np.mean(predict_labels(model, x) == y))
    assert summary["clean"]["loss_sensitivity"] == pytest.approx(
        metrics.loss_sensitivity(model, x, y), rel=1e-5)
    _, arrays = read_arrays(artifacts["fgsm"], ATTACK_SCHEMA)
    fgsm = summary["artifacts"][0]
    pred = predict_labels(model, arrays["x_adv"])
    assert fgsm["setting"] == "white-box"
    assert fgsm["adv_accuracy"] == pytest.approx(np.mean(pred == arrays["y"]))
    pred_clean = predict_labels(model, x)
    assert fgsm["success_against"] == "prediction"
    assert fgsm["success_rate"] == pytest.approx(np.mean(pred != pred_clean))
    assert fgsm["success_rate_prediction"] == fgsm["success_rate"]
    assert fgsm["success_rate_label"] == pytest.approx(np.mean(pred != arrays["y"]))
    np.testing.assert_array_equal(pred, arrays["pred_adv"])  # white-box: as crafted
    assert fgsm["norms"]["linf_mean"] == pytest.approx(0.1, abs=1e-6)
    assert fgsm["robustness"] is None  # fgsm is not a minimal attack
    metric_values = summary["metrics"]
    # Robust accuracy over the bounded artifacts only: minimal FGSM's is no robustness figure.
    assert summary["artifacts"][1]["minimal"]
    assert metric_values["adv_accuracy"] == fgsm["adv_accuracy"]


def test_minimal_artifact_gives_robustness_and_training_distance(trained_tiny_cnn, artifacts,
                                                                 fake_data_dir, no_attacks):
    path, model, meta = trained_tiny_cnn
    result = ev.evaluate(model, meta, path, [artifacts["min"]], limit=LIMIT,
                         data_dir=fake_data_dir, sensitivity=False)
    entry = result.summary["artifacts"][0]
    _, arrays = read_arrays(artifacts["min"], ATTACK_SCHEMA)
    x, y, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=LIMIT)
    success = predict_labels(model, arrays["x_adv"]) != predict_labels(model, x)
    # Robustness by hand: L-inf ratio over successful samples.
    flat = (arrays["x_adv"] - x).reshape(LIMIT, -1)
    ratios = np.abs(flat).max(axis=1) / np.abs(x.reshape(LIMIT, -1)).max(axis=1)
    assert entry["robustness"]["norm"] == "linf"
    assert entry["robustness"]["value"] == pytest.approx(ratios[success].mean(), rel=1e-6)
    assert entry["robustness"]["count"] == success.sum()
    # Training distance by brute force over the whole original training set.
    train = ev.training_set("mnist", fake_data_dir)
    assert train.shape == (400, 28, 28, 1)
    diff = arrays["x_adv"].reshape(LIMIT, 1, -1).astype(np.float64) \
        - train.reshape(1, 400, -1).astype(np.float64)
    brute = np.sqrt((diff ** 2).sum(axis=2)).min(axis=1)
    assert entry["training_distance"]["mean"] == pytest.approx(brute[success].mean(), rel=1e-6)
    np.testing.assert_allclose(result.per_sample["artifacts/0/nearest_distance"], brute,
                               rtol=1e-6)
    assert result.summary["metrics"]["robustness"] == entry["robustness"]["value"]
    assert result.summary["metrics"]["loss_sensitivity"] is None


def test_training_set_is_in_original_file_order(fake_data_dir):
    train = ev.training_set("mnist", fake_data_dir)
    x_fit, _, index = data.load("mnist", "train", data_dir=fake_data_dir)
    np.testing.assert_array_equal(train[index], x_fit)


def test_other_model_is_black_box_without_model_level_metrics(other_model, artifacts,
                                                              fake_data_dir, no_attacks):
    path, model, meta = other_model
    result = ev.evaluate(model, meta, path, [artifacts["min"]], limit=LIMIT,
                         data_dir=fake_data_dir, sensitivity=False)
    entry = result.summary["artifacts"][0]
    assert entry["setting"] == "black-box" and entry["crafted_on"]["name"] == "cnn"
    assert entry["robustness"] is None and entry["training_distance"] is None
    _, arrays = read_arrays(artifacts["min"], ATTACK_SCHEMA)
    assert entry["adv_accuracy"] == pytest.approx(
        np.mean(predict_labels(model, arrays["x_adv"]) == arrays["y"]))


def test_write_evaluation_keeps_per_sample_values(trained_tiny_cnn, artifacts, fake_data_dir,
                                                  tmp_path):
    path, model, meta = trained_tiny_cnn
    result = ev.evaluate(model, meta, path, [artifacts["fgsm"]], limit=LIMIT,
                         data_dir=fake_data_dir)
    out = ev.write_evaluation(tmp_path / "eval.h5", result)
    attrs, arrays = read_arrays(out, EVALUATION_SCHEMA)
    assert attrs["kind"] == "evaluate"
    assert attrs["summary"]["clean"]["accuracy"] == result.summary["clean"]["accuracy"]
    for name in ("clean/pred", "clean/loss_gradient_norm", "artifacts/0/success",
                 "artifacts/0/l2", "artifacts/0/pred"):
        assert arrays[name].shape == (LIMIT,)


# -- the gate on hand-made summaries ----------------------------------------------------------
def summary_with(adv=(0.5, 0.7), success=(0.4, 0.2), robustness=0.3):
    entries = [{"kind": "attack", "attack": f"a{i}", "name": f"file{i}", "path": f"file{i}.h5",
                "adv_accuracy": a, "success_rate": s,
                "robustness": {"value": robustness} if i == 0 else None,
                "training_distance": None} for i, (a, s) in enumerate(zip(adv, success))]
    summary = {"clean": {"accuracy": 0.98, "loss_sensitivity": 0.06}, "artifacts": entries}
    summary["metrics"] = ev.aggregate_metrics(summary)
    return summary


def test_aggregate_takes_the_worst_value():
    values = summary_with()["metrics"]
    assert values == {"clean_accuracy": 0.98, "loss_sensitivity": 0.06, "adv_accuracy": 0.5,
                      "success_rate": 0.4, "robustness": 0.3, "training_distance": None}


@pytest.mark.parametrize("under, over, missed", [
    (["adv_accuracy=0.5", "clean_accuracy=0.9"], [], []),
    (["adv_accuracy=0.6"], [], ["adv_accuracy 0.5000 (of file0) is under 0.6"]),
    (["adv_accuracy@a1=0.6"], [], []),
    (["adv_accuracy@file0=0.6"], [], ["adv_accuracy@file0 0.5000 is under 0.6"]),
    ([], ["success_rate=0.3"], ["success_rate 0.4000 (of file0) is over 0.3"]),
    ([], ["loss_sensitivity=0.1"], []),
    (["robustness=0.31"], ["loss_sensitivity=0.05"],
     ["robustness 0.3000 is under 0.31", "loss_sensitivity 0.0600 is over 0.05"]),
])
def test_check_thresholds(under, over, missed):
    thresholds = [ev.parse_threshold(t, "under") for t in under] + \
        [ev.parse_threshold(t, "over") for t in over]
    assert ev.check_thresholds(summary_with(), thresholds) == missed


def test_a_minimal_artifact_gives_no_robust_accuracy():
    """Trial 4: `--fail-under adv_accuracy=0.5` over a PGD and a FAB artifact failed on FAB's
    0.0, which the table prints as "- (minimal)": a minimal attack has no budget, so its
    accuracy is no robustness figure. The gate and the summary's metrics leave it out; with
    only minimal artifacts the gate says what it needs."""
    summary = summary_with()
    summary["artifacts"].append({"kind": "attack", "attack": "fab", "name": "fab",
                                 "path": "fab.h5", "minimal": True, "adv_accuracy": 0.0,
                                 "success_rate": 1.0, "robustness": {"value": 0.1},
                                 "training_distance": None})
    assert ev.aggregate_metrics(summary)["adv_accuracy"] == 0.5
    assert ev.aggregate_metrics(summary)["success_rate"] == 1.0
    assert ev.check_thresholds(summary, [ev.parse_threshold("adv_accuracy=0.5")]) == []
    with pytest.raises(ev.GateError, match=re.escape(
            "adv_accuracy@fab is not available: it needs an artifact of a bounded attack (a "
            "minimal attack has no budget: its accuracy is no robustness figure)")):
        ev.check_thresholds(summary, [ev.parse_threshold("adv_accuracy@fab=0.5")])


def test_the_gate_names_an_authors_sensitivity_variant():
    summary = summary_with()
    summary["clean"]["loss_sensitivity_variant"] = "softmax"
    missed = ev.check_thresholds(summary, [ev.parse_threshold("loss_sensitivity=0.05", "over")])
    assert missed == ["loss_sensitivity (softmax variant) 0.0600 is over 0.05"]


@pytest.mark.parametrize("variant, metric", [(None, "loss_sensitivity"),
                                             ("loss", "loss_sensitivity"),
                                             ("logit", "loss_sensitivity_logit")])
def test_csv_names_the_sensitivity_variant(variant, metric):
    summary = {"model": {"name": "cnn", "path": "cnn.h5"}, "artifacts": [],
               "clean": {"accuracy": 0.98, "loss_sensitivity": 0.06,
                         "loss_sensitivity_variant": variant}}
    rows = report.evaluation_rows(summary)
    assert [(r["metric"], r["value"]) for r in rows] == [("clean_accuracy", 0.98),
                                                        (metric, 0.06)]


def _entry(attack, on, path, **params):
    return {"attack": attack, "crafted_on": {"name": on, "path": f"{on}.h5"}, "path": path,
            "attack_params": params}


@pytest.mark.parametrize("entries, labels", [
    ([_entry("fgsm", "cnn", "a.h5"), _entry("pgd", "cnn", "b.h5")], ["fgsm", "pgd"]),
    ([_entry("fgsm", "cnn", "a.h5"), _entry("fgsm", "mlp", "b.h5")],
     ["fgsm (cnn)", "fgsm (mlp)"]),
    ([_entry("fgsm-min", "cnn", "a.h5", eps_step=0.05, search="exact"),
      _entry("fgsm-min", "cnn", "b.h5", eps_step=0.05, search="authors"),
      _entry("fgsm", "cnn", "c.h5", eps=0.1)],
     ["fgsm-min (cnn) search=exact", "fgsm-min (cnn) search=authors", "fgsm (cnn)"]),
    ([_entry("fgsm", "cnn", "runs/a.h5", eps=0.1), _entry("fgsm", "cnn", "runs/b.h5", eps=0.1)],
     ["fgsm (cnn) [a]", "fgsm (cnn) [b]"]),
])
def test_artifact_labels_are_distinct(entries, labels):
    assert report.artifact_labels(entries) == labels


def test_nan_metric_misses_the_gate():
    summary = summary_with(robustness=math.nan)
    missed = ev.check_thresholds(summary, [ev.parse_threshold("robustness=0.1")])
    assert missed == ["robustness is n/a (no successful adversarial sample), required >= 0.1"]


@pytest.mark.parametrize("text, match", [
    ("accuracy=0.5", "unknown metric 'accuracy'"),
    ("adv_accuracy", "is not NAME=VALUE"),
    ("adv_accuracy=high", "'high' is not a number"),
    ("adv_accuracy=nan", "must be a finite number"),
    ("clean_accuracy@fgsm=0.5", "clean_accuracy is not a per-artifact metric"),
])
def test_parse_threshold_errors(text, match):
    with pytest.raises(ParameterError, match=match):
        ev.parse_threshold(text)


@pytest.mark.parametrize("text, match", [
    ("training_distance=1", "training_distance is not available"),
    ("adv_accuracy@pgd=0.1", "no given attack artifact has attack or file name 'pgd'"),
])
def test_unavailable_metric(text, match):
    with pytest.raises(ParameterError, match=match):
        ev.check_thresholds(summary_with(), [ev.parse_threshold(text)])


# -- bad input ----------------------------------------------------------------------------------
def rewrite(source, target, *, attrs=None, arrays=None):
    """A copy of an attack artifact with some attrs or arrays replaced."""
    old_attrs, old_arrays = read_arrays(source, ATTACK_SCHEMA)
    write_arrays(target, ATTACK_SCHEMA, {**old_attrs, **(attrs or {})},
                 {**old_arrays, **(arrays or {})})
    return target


def test_artifact_of_another_dataset(trained_tiny_cnn, artifacts, tmp_path):
    path, model, meta = trained_tiny_cnn
    bad = rewrite(artifacts["fgsm"], tmp_path / "cifar.h5", attrs={"dataset": "cifar10"},
                  arrays={"x_adv": np.zeros((LIMIT, 32, 32, 3), np.float32)})
    with pytest.raises(ArtifactError, match="holds cifar10 images but model .* was trained on "
                                            "mnist"):
        ev.score_artifact(model, meta, path, bad)


def test_artifact_of_other_input_shape(trained_tiny_cnn, artifacts, tmp_path):
    path, model, meta = trained_tiny_cnn
    bad = rewrite(artifacts["fgsm"], tmp_path / "small.h5",
                  arrays={"x_adv": np.zeros((LIMIT, 14, 14, 1), np.float32)})
    # The artifact's own schema refuses it first: mnist images are 28x28.
    with pytest.raises(ArtifactError, match=r"small.h5: x_adv holds images of shape "
                                            r"\(14, 14, 1\), but mnist images are \(28, 28, 1\)"):
        ev.score_artifact(model, meta, path, bad)


def test_interrupted_artifact(trained_tiny_cnn, artifacts, tmp_path):
    path, model, meta = trained_tiny_cnn
    bad = rewrite(artifacts["fgsm"], tmp_path / "part.h5", attrs={"complete": False},
                  arrays={"completed": np.arange(LIMIT) < 16})
    with pytest.raises(ArtifactError, match="interrupted run \\(16 of 40 samples done\\)"):
        ev.score_artifact(model, meta, path, bad)


def test_artifact_whose_samples_differ_from_the_data(trained_tiny_cnn, artifacts, tmp_path,
                                                    fake_data_dir):
    path, model, meta = trained_tiny_cnn
    _, arrays = read_arrays(artifacts["fgsm"], ATTACK_SCHEMA)
    bad = rewrite(artifacts["fgsm"], tmp_path / "moved.h5",
                  arrays={"indices": arrays["indices"] + 1})
    with pytest.raises(ArtifactError, match="do not hold the samples the artifact was crafted"):
        ev.score_artifact(model, meta, path, bad, data_dir=fake_data_dir)


def test_truncated_artifact(trained_tiny_cnn, artifacts, tmp_path):
    path, model, meta = trained_tiny_cnn
    bad = tmp_path / "cut.h5"
    shutil.copy(artifacts["fgsm"], bad)
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size // 2)
    with pytest.raises(ArtifactError, match="is not a readable HDF5 file"):
        ev.evaluate(model, meta, path, [bad], limit=4)


def test_not_an_attack_artifact(trained_tiny_cnn, tmp_path):
    path, model, meta = trained_tiny_cnn
    with pytest.raises(ArtifactError, match="is a 'advbench.model' artifact; expected a "
                                            "'advbench.attack'"):
        ev.evaluate(model, meta, path, [path], limit=4)
    with pytest.raises(ArtifactError, match="does not exist"):
        ev.evaluate(model, meta, path, [tmp_path / "missing.h5"], limit=4)


def test_evaluate_option_errors(trained_tiny_cnn):
    path, model, meta = trained_tiny_cnn
    with pytest.raises(ParameterError, match="distance variant must be one of l2, paper"):
        ev.evaluate(model, meta, path, [], distance_variant="cosine")
    with pytest.raises(ParameterError) as error:
        ev.evaluate(model, meta, path, [], sensitivity_variant="gradient")
    assert str(error.value) == ("sensitivity variant must be one of loss, softmax, logit, "
                                "got 'gradient'")
    with pytest.raises(ArtifactError, match="does not say which data set"):
        ev.evaluate(model, {}, path, [])


# -- the training-set distance in shards ------------------------------------------------------
def _json(value):
    return json.dumps(jsonable(value), sort_keys=True)


def _parts(meta, path, paths, count, folder, fake_data_dir, variant="l2"):
    return [ev.write_evaluation(folder / f"part{i}.h5", ev.distance_part(
        meta, path, paths, Shard(i, count), data_dir=fake_data_dir, distance_variant=variant),
        kind=ev.DISTANCE_PART) for i in range(count)]


@pytest.mark.parametrize("count, variant", [(2, "l2"), (3, "paper"), (7, "l2")])
def test_distance_parts_combine_to_the_one_process_evaluation(
        count, variant, trained_tiny_cnn, artifacts, fake_data_dir, tmp_path, monkeypatch):
    path, model, meta = trained_tiny_cnn
    monkeypatch.setattr(ev, "DISTANCE_BLOCK", 8)  # 40 queries: 5 blocks, 7 shards leave 2 empty
    given = [artifacts["fgsm"], artifacts["min"]]
    kwargs = dict(limit=LIMIT, data_dir=fake_data_dir, distance_variant=variant)
    one = ev.evaluate(model, meta, path, given, **kwargs)
    parts = _parts(meta, path, given, count, tmp_path, fake_data_dir, variant)
    rows = [read_arrays(p, EVALUATION_SCHEMA)[1]["runs/0/rows"] for p in parts]
    assert [int(r.sum()) for r in rows] == [len(range(i, 5, count)) * 8 for i in range(count)]
    assert (np.sum(rows, axis=0) == 1).all()
    # The combination reads no training image: every distance comes from the parts.
    monkeypatch.setattr(ev, "training_set", lambda *a: pytest.fail("distance computed again"))
    two = ev.evaluate(model, meta, path, [*parts[::-1], *given], **kwargs)
    assert _json(two.summary) == _json(one.summary)
    assert sorted(two.per_sample) == sorted(one.per_sample)
    for name, values in one.per_sample.items():
        assert two.per_sample[name].dtype == values.dtype, name
        np.testing.assert_array_equal(two.per_sample[name], values, err_msg=name)


def _rewrite_part(source, target, **summary):
    attrs, arrays = read_arrays(source, EVALUATION_SCHEMA)
    write_arrays(target, EVALUATION_SCHEMA,
                 {**attrs, "summary": {**attrs["summary"], **summary}}, arrays)
    return target


def test_distance_part_errors(trained_tiny_cnn, artifacts, other_model, fake_data_dir,
                              tmp_path, monkeypatch):
    path, model, meta = trained_tiny_cnn
    monkeypatch.setattr(ev, "DISTANCE_BLOCK", 8)
    minimal = artifacts["min"]
    p0, p1 = _parts(meta, path, [minimal], 2, tmp_path, fake_data_dir)
    kwargs = dict(limit=LIMIT, data_dir=fake_data_dir, sensitivity=False)

    def message(paths, scored=(model, meta, path), **options):
        with pytest.raises((ArtifactError, ParameterError)) as info:
            ev.evaluate(*scored, paths, **{**kwargs, **options})
        return str(info.value)

    assert message([minimal, p0]) == (f"the distance parts of {minimal} hold 24 of 40 rows; "
                                      "give every part (missing: 1/2)")
    assert message([minimal, p0, p1, p0]) == (f"{p0} and {p0} both hold rows of {minimal}; "
                                              "give each part once")
    assert message([artifacts["fgsm"], p0, p1]) == (
        f"{p0} holds distances of another attack run than the given artifacts (run keys "
        "differ); give the parts of their runs")
    other = _rewrite_part(p1, tmp_path / "other.h5", data_hash="0" * 64)
    assert message([minimal, p0, other]) == (
        f"{other} holds distances to another mnist training set than the one here (the data "
        "hash differs); compute every part on the same data")
    assert message([minimal, p0, p1], distance_variant="paper") == (
        f"{p0} holds l2 distances, not paper; evaluate with --distance-variant l2 or compute "
        "the parts again")
    blocks = _rewrite_part(p1, tmp_path / "blocks.h5", block=512)
    assert message([minimal, p0, blocks]) == (
        f"{blocks} was cut in blocks of 512 query rows, not 8; compute the parts again with "
        "this advbench")
    assert message([minimal, p0, p1], distance=False) == (
        "distance parts were given but the training-set distance is off (--no-distance); "
        "drop one or the other")
    dense_path, dense, dense_meta = other_model
    assert message([minimal, p0, p1], scored=(dense, dense_meta, dense_path)) == (
        f"{p0} holds distances of {minimal}, which gets none from model {dense_path} (not a "
        "minimal attack crafted on it); drop the part")
    with pytest.raises(ParameterError) as info:
        ev.distance_part(meta, path, [artifacts["fgsm"]], Shard(0, 2), data_dir=fake_data_dir)
    assert str(info.value) == (f"no given artifact gets a training-set distance from model "
                               f"{path}: that needs a minimal attack (fgsm-min, deepfool, cw-l2, "
                               "fab, fab-t, fmn) crafted on it")

@pytest.mark.parametrize("variant", ["loss", "softmax", "logit"])
def test_evaluate_sensitivity_variant(trained_tiny_cnn, fake_data_dir, variant):
    path, model, meta = trained_tiny_cnn
    x, y, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=LIMIT)
    clean = ev.evaluate(model, meta, path, [], limit=LIMIT, data_dir=fake_data_dir,
                        sensitivity_variant=variant).summary["clean"]
    assert clean["loss_sensitivity_variant"] == variant
    assert clean["loss_sensitivity"] == pytest.approx(
        metrics.loss_sensitivity(model, x, y, variant=variant), rel=1e-5)
