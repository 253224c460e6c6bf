"""`advbench reproduce` end to end on a tiny profile and the synthetic digits."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from advbench.paper import experiments, profiles
from advbench.cli import main
from advbench.errors import ParameterError

TINY = dataclasses.replace(
    experiments.PROFILES["quick"], name="quick", epochs=1, train_limit=60, gda_epochs=1,
    test_limit=20, expensive_limit=10, eps_grid="0.1:0.3:0.1", extra_seeds=(1,),
    strong_limit=10,
    attack_params={**profiles.PAPER_ATTACKS,
                   "autoattack": {"n_iter": 10, "n_target_classes": 3, "n_queries": 100},
                   "fgsm-min": {"eps_step": 0.1, "eps_max": 1.0},
                   "deepfool": {"max_iter": 20},
                   "jsma": {"theta": 1.0, "gamma": 0.1},
                   "cw-l2": {"confidence": 2.3, "binary_search_steps": 2, "max_iter": 20}})


@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(experiments.PROFILES, "quick", TINY)


def test_quick_grid_end_to_end_and_resume(tiny_profile, fake_data_dir, tmp_path):
    args = ["reproduce", "--dataset", "mnist", "--profile", "quick", "--out", str(tmp_path),
            "--data-dir", str(fake_data_dir), "--models-dir", str(tmp_path / "zoo"), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = tmp_path / "mnist" / "quick" / "report.md"
    assert result.stdout.strip() == str(report)
    text = report.read_text()
    for heading in ("## Models", "## Table 1", "## Figure 3", "## Figure 4", "## Table 2",
                    "## Table 3", "## Table 4", "## Figure 1", "## Findings",
                    "## The defenses under strong white-box attacks"):
        assert heading in text, heading
    assert "(73.88)" in text and "(0.0609)" in text  # the paper's numbers beside ours
    assert "Seed variation: each architecture trained with 2 seeds" in text
    assert "means over 2 seeds" in text
    for png in ("figure1.png", "figure3.png", "figure4.png"):
        assert (report.parent / png).stat().st_size > 10_000
    results = json.loads((report.parent / "results.json").read_text())
    assert set(results["table2"]) == set(experiments.published.DEFENSE_MODELS)

    # A rerun finds every artifact and trains nothing.
    models = sorted((report.parent / "models").iterdir())
    mtimes = [m.stat().st_mtime_ns for m in models]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0
    assert [m.stat().st_mtime_ns for m in models] == mtimes


def test_unknown_profile_and_dataset(tmp_path):
    with pytest.raises(ParameterError, match="unknown profile 'huge'"):
        experiments.Reproduction("mnist", "huge", tmp_path)
    with pytest.raises(ParameterError, match="unknown data set 'svhn'"):
        experiments.Reproduction("svhn", "quick", tmp_path)


def test_models_in_the_zoo_store_are_reused_when_parameters_match(fake_data_dir, tmp_path,
                                                                  monkeypatch):
    from advbench.artifacts import save_model
    from advbench.models import zoo_path
    from advbench.train import train

    profile = dataclasses.replace(TINY, name="demo", models=("cnn", "cnn-brelu"),
                                  experiments=(), extra_seeds=())
    monkeypatch.setitem(experiments.PROFILES, "demo", profile)
    zoo = tmp_path / "zoo"
    repro = experiments.Reproduction("mnist", "demo", tmp_path / "out",
                                   data_dir=str(fake_data_dir), models_dir=zoo)
    config, defense = repro._train_config("cnn")
    model, meta = train(config, defense)
    stored = zoo_path("mnist", "cnn", "relu", "none", zoo)
    save_model(stored, model, meta)
    # A zoo model trained with other parameters is not used.
    other = dataclasses.replace(config, epochs=2)
    model, meta = train(other, defense)
    save_model(zoo_path("mnist", "cnn", "brelu", "none", zoo), model,
               {**meta, "activation": "brelu"})

    repro.run()
    assert repro.models["cnn"] == stored
    assert repro.models["cnn-brelu"] == tmp_path / "out" / "mnist" / "demo" / "models" / \
        "mnist-cnn-brelu.h5"
