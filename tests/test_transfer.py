"""Tests for the transfer matrix: cells against direct predictions, white-box diagonal,
artifact reuse by run key (same file or another file in the runs folder), bad input."""

import shutil

import numpy as np
import pytest

from advbench import data
from advbench.attacks.fgsm import FGSM
from advbench.core.errors import ArtifactError, ParameterError
from advbench.models.zoo import predict_labels
from advbench.run.artifacts import ATTACK_SCHEMA, read_arrays
from advbench.score import evaluate as ev, transfer as tr

from conftest import save_dense_mnist

LIMIT = 30


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    return save_dense_mnist(tmp_path_factory.mktemp("dense") / "mnist-dense.h5", seed=11)


def run_transfer(sources, targets, runs_dir, data_dir, **kwargs):
    return tr.transfer(sources, targets, FGSM(eps=0.1), limit=LIMIT, batch_size=16,
                       data_dir=data_dir, runs_dir=runs_dir, **kwargs)


def test_matrix_cells_and_diagonal(trained_tiny_cnn, dense_model, fake_data_dir, tmp_path):
    models = [trained_tiny_cnn, dense_model]
    result = run_transfer(models, models, tmp_path, fake_data_dir)
    summary = result.summary
    assert summary["setting"] == [["white-box", "black-box"], ["black-box", "white-box"]]
    assert [s["name"] for s in summary["sources"]] == ["cnn", "dense"]
    assert summary["reused"] == [False, False] and summary["samples"] == LIMIT
    for s, source_artifact in enumerate(summary["artifacts"]):
        _, arrays = read_arrays(source_artifact, ATTACK_SCHEMA)
        assert arrays["x_adv"].shape == (LIMIT, 28, 28, 1)
        for t, (_, model, _) in enumerate(models):
            pred = predict_labels(model, arrays["x_adv"])
            assert summary["accuracy"][s][t] == pytest.approx(np.mean(pred == arrays["y"]))
            # Success against the target's clean prediction (issue 14), as ART.
            x, _, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=LIMIT)
            pred_clean = predict_labels(model, x)
            y = arrays["y"]
            correct = pred_clean == y
            # Issue 19: robust accuracy is the headline; success is over the samples the
            # tested model classifies correctly, the clean errors counted apart.
            assert summary["robust_accuracy"][s][t] == summary["accuracy"][s][t]
            assert summary["success_rate"][s][t] == pytest.approx(np.mean(pred[correct]
                                                                          != y[correct]))
            assert summary["correct"][t] == correct.sum()
            assert summary["clean_errors"][t] == (~correct).sum()
            moved = pred[~correct] != pred_clean[~correct]
            assert summary["success_rate_errors"][s][t] == pytest.approx(
                moved.mean() if moved.size else float("nan"), nan_ok=True)
            assert summary["success_rate_prediction"][s][t] == pytest.approx(
                np.mean(pred != pred_clean))
            np.testing.assert_array_equal(result.per_sample[f"cells/{s}_{t}/pred"], pred)
    # White-box FGSM hurts the CNN more than the dense model's examples do.
    assert summary["accuracy"][0][0] < summary["accuracy"][1][0]


def test_existing_artifact_is_reused(trained_tiny_cnn, dense_model, fake_data_dir, tmp_path,
                                     monkeypatch):
    first = run_transfer([trained_tiny_cnn], [dense_model], tmp_path, fake_data_dir)
    crafted = first.summary["artifacts"][0]
    # Under another name in the runs folder: still found by its run key.
    renamed = tmp_path / "renamed.h5"
    shutil.move(crafted, renamed)

    def refuse(*args, **kwargs):
        raise AssertionError("crafted again instead of reusing")

    monkeypatch.setattr(tr, "attack_split", refuse)
    again = run_transfer([trained_tiny_cnn], [dense_model], tmp_path, fake_data_dir)
    assert again.summary["reused"] == [True]
    assert again.summary["artifacts"] == [str(renamed)]
    assert again.summary["accuracy"] == first.summary["accuracy"]


def test_other_parameters_are_not_reused(trained_tiny_cnn, fake_data_dir, tmp_path):
    run_transfer([trained_tiny_cnn], [trained_tiny_cnn], tmp_path, fake_data_dir)
    other = tr.transfer([trained_tiny_cnn], [trained_tiny_cnn], FGSM(eps=0.2), limit=LIMIT,
                        batch_size=16, data_dir=fake_data_dir, runs_dir=tmp_path)
    assert other.summary["reused"] == [False]
    assert len(list(tmp_path.glob("*.h5"))) == 2


def test_write_transfer_artifact(trained_tiny_cnn, fake_data_dir, tmp_path):
    from advbench.run.artifacts import EVALUATION_SCHEMA

    result = run_transfer([trained_tiny_cnn], [trained_tiny_cnn], tmp_path, fake_data_dir)
    out = ev.write_evaluation(tmp_path / "t.h5", result, kind="transfer")
    attrs, arrays = read_arrays(out, EVALUATION_SCHEMA)
    assert attrs["kind"] == "transfer"
    assert arrays["accuracy"].shape == (1, 1)
    assert attrs["summary"]["accuracy"] == result.summary["accuracy"]


def test_models_of_different_datasets(trained_tiny_cnn, tmp_path):
    path, model, meta = trained_tiny_cnn
    cifar = ("c.h5", model, {**meta, "dataset": "cifar10"})
    with pytest.raises(ArtifactError, match="was trained on cifar10, not mnist; transfer needs "
                                            "models of one data set"):
        tr.transfer([trained_tiny_cnn], [cifar], FGSM(), runs_dir=tmp_path)


def test_transfer_needs_sources_and_targets(trained_tiny_cnn):
    with pytest.raises(ParameterError, match="at least one --source and one --target"):
        tr.transfer([], [trained_tiny_cnn], FGSM())


def _matrix_summary(**extra):
    return {"attack": "fgsm", "attack_params": {"eps": 0.1}, "samples": 4, "dataset": "mnist",
            "split": "test", "sources": [{"name": "cnn"}], "targets": [{"name": "cnn"},
                                                                      {"name": "dense"}],
            "setting": [["white-box", "black-box"]], "accuracy": [[0.25, 0.5]],
            "clean_accuracy": [0.75, 0.5], "artifacts": ["a.h5"], **extra}


def test_matrix_prints_success_over_the_correct_and_reads_old_summaries():
    """Issue 19: the table adds the success rate over each tested model's correct images and
    their counts; a summary from before it (success over all samples) prints its accuracy
    only and its CSV keeps the old columns."""
    from rich.console import Console
    from advbench.score import report
    new = _matrix_summary(robust_accuracy=[[0.25, 0.5]], success_rate=[[2 / 3, float("nan")]],
                          success_over="correct", correct=[3, 2], clean_errors=[1, 2],
                          success_rate_errors=[[1.0, 0.5]], success_rate_prediction=[[0.75, 0.25]])
    console = Console(record=True, width=200)
    report.print_transfer(new, console, fmt="markdown")
    text = console.export_text()
    assert "success rate (%) over the images each tested model classifies correctly" in text
    assert "| cnn | 66.67 | n/a |" in text
    assert "| (correct / clean errors) | 3 / 1 | 2 / 2 |" in text
    rows = report.transfer_rows(new)
    assert rows[1]["success_rate_errors"] == 0.5 and rows[1]["correct"] == 2
    assert rows[0]["success_rate_prediction"] == 0.75
    old = _matrix_summary(success_rate=[[0.5, 0.5]], success_against="prediction")
    console = Console(record=True, width=200)
    report.print_transfer(old, console, fmt="markdown")
    assert "success rate" not in console.export_text()
    assert "correct" not in report.transfer_rows(old)[0]


def _plain_progress():
    import io
    from rich.console import Console
    from advbench.core.progress import Progress
    out = io.StringIO()
    return Progress(console=Console(file=out, width=300), interval=1e9), out


def test_crafting_prints_the_runs_parameter_line(trained_tiny_cnn, fake_data_dir, tmp_path):
    """Issue 19: the library's crafting (transfer and reproduce's attack stages) prints the
    line `advbench attack` prints; a reused artifact needs none."""
    progress, out = _plain_progress()
    run_transfer([trained_tiny_cnn], [trained_tiny_cnn], tmp_path, fake_data_dir,
                 progress=progress)
    line = ("fgsm: norm=linf eps=0.1; untargeted; seed 0; 30 samples (class-balanced) of "
            "mnist test (start 0, batch size 16)")
    assert line in out.getvalue().splitlines()
    progress, out = _plain_progress()
    run_transfer([trained_tiny_cnn], [trained_tiny_cnn], tmp_path, fake_data_dir,
                 progress=progress)
    assert line not in out.getvalue() and "reusing " in out.getvalue()


def test_ray_path_prints_the_runs_parameter_line(trained_tiny_cnn, fake_data_dir, tmp_path,
                                                 monkeypatch):
    """The Ray driver prints the run's parameter line before its tasks (Ray stood in for by
    a sequential fake: the line is the driver's, not the workers')."""
    from advbench.run import ray_engine
    from advbench.run.runner import AttackRun

    class FakeRay:
        def remote(self, **_):
            return lambda fn: type("Task", (), {"remote": staticmethod(fn)})

        def get(self, values):
            return values

        def cluster_resources(self):
            return {}

    monkeypatch.setattr(ray_engine, "_init_ray", lambda workers: FakeRay())
    path = trained_tiny_cnn[0]
    run = AttackRun(model_path=str(path), dataset="mnist", limit=12, batch_size=4,
                    data_dir=str(fake_data_dir), seed=3, defaults_from="eps: mnist")
    progress, out = _plain_progress()
    ray_engine.attack_with_ray(run, FGSM(eps=0.3), tmp_path / "ray.h5", workers=2,
                               progress=progress)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["fgsm: norm=linf eps=0.3 (eps: mnist's default); untargeted; seed 3; "
                         "12 samples (class-balanced) of mnist test (start 0, batch size 4)",
                         "fgsm: 2 Ray tasks"]
