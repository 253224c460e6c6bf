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
            assert summary["success_rate"][s][t] == pytest.approx(np.mean(pred != pred_clean))
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
