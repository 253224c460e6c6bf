"""`advbench reproduce --plan / --stage / --emit slurm`: the reproduction as a task graph."""

import json
import sys

import pytest
from click.testing import CliRunner

from advbench.cli import main
from advbench.core.errors import ParameterError
from advbench.paper import experiments
from advbench.paper.plan import base_command, plan

from test_paper_experiments import TINY  # noqa: F401  (the tiny profile of the grid test)


@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(experiments.PROFILES, "quick", TINY)


@pytest.mark.parametrize("dataset, profile", [("mnist", "quick"), ("mnist", "paper"),
                                              ("mnist", "demo"), ("toy", "quick"),
                                              ("mnist", "authors")])
def test_plan_is_a_graph_in_dependency_order(dataset, profile, tmp_path):
    repro = experiments.Reproduction(dataset, profile, tmp_path)
    nodes = plan(repro, base_command(repro, "out"))
    ids = [n["id"] for n in nodes]
    assert len(set(ids)) == len(ids)
    seen = set()
    for node in nodes:
        assert set(node["needs"]) <= seen, node["id"]  # every dependency comes first
        seen.add(node["id"])
    report = nodes[-1]
    assert report["id"] == "report" and set(report["needs"]) == set(ids[:-1])
    assert report["command"] == (f"advbench reproduce --dataset {dataset} --profile {profile} "
                                 "--out out --seed 0")
    assert nodes[0]["command"] == f"{report['command']} --stage {ids[0]}"
    # Every model a stage uses is trained by its own train stage, which it needs.
    if dataset == "mnist":
        trains = {i for i in ids if i.startswith("train:")}
        seeds = repro.seeds if profile != "demo" else (0,)
        chosen = experiments.PROFILES[profile]
        # The certified section trains its own models (first seed only).
        own = {f"train:{m}" for m in chosen.certified_models if m not in chosen.models} \
            if "certified" in chosen.experiments else set()
        assert trains == {f"train:{m}{repro.suffix(s)}"
                          for m in chosen.models for s in seeds} | own
        if "certified" in chosen.experiments:
            assert {f"certified:{m}" for m in chosen.certified_models} <= set(ids)
        if profile != "demo":
            assert len(seeds) == 5 and "train:cnn@seed4" in trains
        for node in nodes:
            if node["id"].startswith(("attack:", "curve:", "table2:", "strong:", "certified:")):
                assert any(n.startswith("train:") for n in node["needs"]), node["id"]
            # A seed's experiments need that seed's models, never another seed's.
            tag = node["id"].partition("@")[2]
            if node["id"] != "report":
                assert all(n.partition("@")[2] == tag for n in node["needs"]
                           if n.startswith("train:") and node["id"] != "figure1"), node["id"]


def test_plan_json_and_slurm_scripts(tmp_path):
    base = ["reproduce", "--profile", "demo", "--out", "/shared/results", "--data-dir",
            "/shared/data"]
    result = CliRunner().invoke(main, [*base, "--plan", "--json"])
    assert result.exit_code == 0, result.output
    nodes = json.loads(result.stdout)
    assert [n["id"] for n in nodes] == [
        "train:cnn", "train:cnn-brelu-gda", "attack:fgsm:cnn", "attack:deepfool:cnn",
        "attack:fgsm:cnn-brelu-gda", "attack:deepfool:cnn-brelu-gda", "evaluate",
        "certified:cnn-brelu-gda", "report"]
    assert nodes[7]["needs"] == ["train:cnn-brelu-gda"]
    assert nodes[2]["needs"] == ["train:cnn"]
    assert nodes[2]["command"] == ("advbench reproduce --dataset mnist --profile demo --out "
                                   "/shared/results --seed 0 --data-dir /shared/data --stage "
                                   "attack:fgsm:cnn")
    text = CliRunner().invoke(main, [*base, "--plan"]).stdout.splitlines()
    assert text[0] == f"train:cnn\t-\t{nodes[0]['command']}"

    result = CliRunner().invoke(main, [*base, "--emit", "slurm", str(tmp_path / "jobs")])
    assert result.exit_code == 0, result.output
    written = result.stdout.split()
    assert len(written) == 10 and written[-1] == str(tmp_path / "jobs" / "submit.sh")
    script = (tmp_path / "jobs" / "003-attack-fgsm-cnn.sbatch").read_text()
    assert "#SBATCH --job-name=advbench-attack:fgsm:cnn" in script
    assert script.rstrip().endswith(nodes[2]["command"])
    submit = (tmp_path / "jobs" / "submit.sh").read_text().splitlines()
    assert "JOB1=$(sbatch --parsable 001-train-cnn.sbatch)" in submit
    assert ("JOB3=$(sbatch --parsable --dependency=afterok:$JOB1 003-attack-fgsm-cnn.sbatch)"
            in submit)
    assert ("JOB7=$(sbatch --parsable --dependency=afterok:$JOB3:$JOB4:$JOB5:$JOB6 "
            "007-evaluate.sbatch)" in submit)


def test_stage_runs_one_node(tiny_profile, fake_data_dir, tmp_path):
    args = ["reproduce", "--profile", "quick", "--out", str(tmp_path), "--data-dir",
            str(fake_data_dir), "--models-dir", str(tmp_path / "zoo"), "-q"]
    result = CliRunner().invoke(main, [*args, "--stage", "train:cnn"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "train:cnn\n"
    models = tmp_path / "mnist" / "quick" / "models"
    assert [p.name for p in models.iterdir()] == ["mnist-cnn.h5"]
    result = CliRunner().invoke(main, [*args, "--stage", "curve:fgsm:cnn"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in models.iterdir()] == ["mnist-cnn.h5"]  # trained nothing
    assert list((tmp_path / "mnist" / "quick" / "runs").glob("*curve*.h5"))


@pytest.mark.parametrize("flags, code, message", [
    (["--stage", "train:nope"], 2, "Error: unknown stage 'train:nope'; `advbench reproduce "
                                   "--plan` lists the stages\n"),
    (["--json"], 2, "--json prints the --plan; give --plan too"),
    (["--plan", "--stage", "train:cnn"], 2, "give one of --plan, --stage and --emit"),
    (["--engine", "ray", "--stage", "train:cnn"], 2,
     "--engine ray runs every stage; drop --plan, --stage and --emit"),
    (["--workers", "2"], 2, "--workers is for --engine ray"),
])
def test_plan_flag_errors(flags, code, message, tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path / "out"), *flags])
    assert result.exit_code == code
    assert message in result.output
    assert list(tmp_path.iterdir()) == []  # refused before any folder is made


def test_run_stage_unknown_id(tmp_path):
    with pytest.raises(ParameterError, match="unknown stage 'x'"):
        experiments.Reproduction("mnist", "demo", tmp_path).run_stage("x")


def test_engine_ray_without_ray_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(main, ["reproduce", "--profile", "demo", "--out", str(tmp_path),
                                       "--engine", "ray", "-q"])
    assert result.exit_code == 1
    assert result.output == "Error: --engine ray needs Ray: pip install 'advbench[ray]'\n"
