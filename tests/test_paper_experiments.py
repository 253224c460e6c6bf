"""`advbench reproduce` end to end on a tiny profile and the synthetic digits."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

import advbench
from advbench.cli import main
from advbench.core.errors import ParameterError
from advbench.core.revision import describe, source_revision
from advbench.paper import authors, experiments, profiles

TINY = dataclasses.replace(
    experiments.PROFILES["quick"], name="quick", epochs=1, train_limit=60, gda_epochs=1,
    test_limit=20, expensive_limit=10, eps_grid="0.1:0.3:0.1", seeds=2, seed_expensive_limit=6,
    strong_limit=10, certify_limit=10, certify_params={"n0": 10, "n": 100, "alpha": 0.001},
    attack_params={**profiles.PAPER_ATTACKS,
                   "autoattack": {"n_iter": 10, "n_target_classes": 3, "n_queries": 100},
                   "audit": {"checks": ("logits-and-gradients", "accuracy-vs-eps"),
                             "pgd_steps": 5, "curve_points": 2},
                   "fgsm-min": {"eps_step": 0.1, "eps_max": 1.0},
                   "deepfool": {"max_iter": 20},
                   "jsma": {"theta": 1.0, "gamma": 0.1},
                   "cw-l2": {"confidence": 2.3, "binary_search_steps": 2, "max_iter": 20}})


@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(experiments.PROFILES, "quick", TINY)


def test_one_model_two_seeds_end_to_end_and_resume(fake_data_dir, tmp_path, monkeypatch):
    """The fast guard of `reproduce` (the whole grid below is slow): stages, seeds, report,
    results, provenance, and a rerun that finds every artifact and trains nothing."""
    monkeypatch.setitem(experiments.PROFILES, "quick", dataclasses.replace(
        TINY, models=("cnn",), experiments=("figure3", "table3")))
    args = ["reproduce", "--dataset", "mnist", "--profile", "quick", "--out", str(tmp_path),
            "--data-dir", str(fake_data_dir), "--models-dir", str(tmp_path / "zoo"), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = tmp_path / "mnist" / "quick" / "report.md"
    assert result.stdout.strip() == str(report)
    text = report.read_text()
    assert "## Figure 3" in text and "## Table 3" in text and "## Table 1" not in text
    assert "every model (the black-box source included) was trained with 2 seeds" in text
    assert f"advbench {advbench.__version__} at {describe(source_revision())}" in text
    assert "stages did their work in it (one uninterrupted run)." in text
    results = json.loads((report.parent / "results.json").read_text())
    assert sorted(results["by_seed"]) == ["0", "1"]
    assert (report.parent / "figure3.png").stat().st_size > 10_000
    models = sorted((report.parent / "models").iterdir())
    assert len(models) == 2
    mtimes = [m.stat().st_mtime_ns for m in models]
    # Not quiet: each stage prints its parameters as `advbench attack` does (issue 19).
    again = CliRunner().invoke(main, [a for a in args if a != "-q"])
    assert again.exit_code == 0
    assert [m.stat().st_mtime_ns for m in models] == mtimes
    curve_lines = [line for line in again.stderr.splitlines() if " curve: " in line]
    assert curve_lines and all(line.startswith(
        f"fgsm curve: norm=linf eps={TINY.eps_grid}; untargeted, on cnn against cnn") and
        line.endswith(f"; seed 0; {TINY.test_limit} samples (class-balanced) of mnist test "
                      "(batch size 256)") for line in curve_lines), curve_lines
    assert "were found complete on disk, done by an earlier invocation" in report.read_text()


# The whole grid (every experiment, claim and authors' column) runs for minutes: with the
# CIFAR-10 one below, 37% of a `make test` under load (issue 19). The test above guards the
# pipeline, seeds, report and resume; test_paper_claims the claims, test_plan one stage of
# this profile; the other sections of the report are guarded here only (`make test-slow`).
@pytest.mark.slow
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
    assert "every model (the black-box source included) was trained with 2 seeds" in text
    for number in range(1, 13):  # every MNIST claim, judged with an interval
        assert f"### Claim {number} (" in text, number
    assert "mean [95% CI]" in text and "## Success and \"fooled\"" in text
    assert "Equal footing: the same number of processed samples" in text
    # Which code made it, and that this invocation computed every stage.
    assert f"advbench {advbench.__version__} at {describe(source_revision())}" in text
    assert "stages did their work in it (one uninterrupted run)." in text
    results_seeds = json.loads((report.parent / "results.json").read_text())["by_seed"]
    assert sorted(results_seeds) == ["0", "1"]
    assert set(results_seeds["1"]["table4"]) == set(experiments.published.DEFENSE_MODELS)
    for png in ("figure1.png", "figure3.png", "figure4.png"):
        assert (report.parent / png).stat().st_size > 10_000
    results = json.loads((report.parent / "results.json").read_text())
    assert set(results["table2"]) == set(experiments.published.DEFENSE_MODELS)
    # The authors'-code columns and rows (issue 12).
    for heading in ("### Table 2 beside the authors' code", "### Table 3 beside the "
                    "authors' code", "## The authors' code against the paper's text"):
        assert heading in text, heading
    assert authors.FS_AS_PAPER_LABEL in text and "(BPDA)" in text
    assert set(results["authors"]["table2"]) == {*experiments.published.DEFENSE_MODELS,
                                                 authors.FS_AS_PAPER}
    for name, row in results["authors"]["table2"].items():
        assert row["attack_params"]["search"] == "authors", name
        assert row["samples"] == TINY.expensive_limit
    assert results["table2"]["cnn"]["attack_params"]["search"] == "exact"
    fs_paper = results["authors"]["fs_as_paper"]
    assert fs_paper["table2"]["attack_params"]["search"] == "exact"
    assert fs_paper["table2"]["setting"] == "white-box"
    for row in [*results["authors"]["table3"].values(), fs_paper["table3"]]:
        assert set(row) == {"samples", "loss", "softmax", "logit"}
        assert row["samples"] == TINY.test_limit and row["logit"] > 0
    # The loss variant is Table 3's own number.
    assert results["authors"]["table3"]["cnn"]["loss"] == pytest.approx(
        results["table3"]["cnn"]["loss_sensitivity"], rel=1e-5)

    # A rerun finds every artifact and trains nothing.
    models = sorted((report.parent / "models").iterdir())
    mtimes = [m.stat().st_mtime_ns for m in models]
    # Not quiet: each stage prints its parameters as `advbench attack` does (issue 19).
    again = CliRunner().invoke(main, [a for a in args if a != "-q"])
    assert again.exit_code == 0
    assert [m.stat().st_mtime_ns for m in models] == mtimes
    curve_lines = [line for line in again.stderr.splitlines() if " curve: " in line]
    assert curve_lines and all(line.startswith(
        f"fgsm curve: norm=linf eps={TINY.eps_grid}; untargeted, on cnn against cnn") and
        line.endswith(f"; seed 0; {TINY.test_limit} samples (class-balanced) of mnist test "
                      "(batch size 256)") for line in curve_lines), curve_lines
    assert "were found complete on disk, done by an earlier invocation" in report.read_text()
    provenance = json.loads((report.parent / "results.json").read_text())["provenance"]
    assert provenance["revision"] == source_revision()
    assert provenance["invocation"]["wall_seconds"] > 0


def test_unknown_profile_and_dataset(tmp_path):
    with pytest.raises(ParameterError, match="unknown profile 'huge'"):
        experiments.Reproduction("mnist", "huge", tmp_path)
    with pytest.raises(ParameterError, match="unknown data set 'svhn'"):
        experiments.Reproduction("svhn", "quick", tmp_path)


def test_models_in_the_zoo_store_are_reused_when_parameters_match(fake_data_dir, tmp_path,
                                                                  monkeypatch):
    from advbench.run.artifacts import save_model
    from advbench.models.zoo import zoo_path
    from advbench.run.train import train

    profile = dataclasses.replace(TINY, name="demo", models=("cnn", "cnn-brelu"),
                                  experiments=(), seeds=1)
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


def test_without_squeezing_is_the_raw_network(fake_data_dir):
    import numpy as np

    from advbench.models.zoo import build_model
    from advbench.models.layers import FeatureSqueezing

    squeezing = build_model("cnn", (28, 28, 1), 10, squeeze_bits=1)
    raw = authors.without_squeezing(squeezing)
    assert not any(isinstance(layer, FeatureSqueezing) for layer in raw.layers)
    plain = build_model("cnn", (28, 28, 1), 10)
    plain.set_weights(squeezing.get_weights())
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(raw(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-6)
    squeezed = np.round(x)
    np.testing.assert_allclose(squeezing(x).numpy(), plain(squeezed).numpy(), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="has no feature squeezing layer to remove"):
        authors.without_squeezing(plain)


def test_authors_profile_uses_the_authors_code_settings(tmp_path):
    quick, profile = experiments.PROFILES["quick"], experiments.PROFILES["authors"]
    assert (profile.epochs, profile.train_limit, profile.test_limit, profile.expensive_limit,
            profile.seeds) == (quick.epochs, quick.train_limit, quick.test_limit,
                               quick.expensive_limit, quick.seeds)
    assert profile.eps_grid == "0.1:1:0.1"
    assert profile.attack_params["jsma"]["theta"] == 1.0
    assert profile.attack_params["cw-l2"]["confidence"] == 10.0
    assert profile.attack_params["deepfool"]["overshoot"] == 0.0
    repro = experiments.Reproduction("mnist", "authors", tmp_path)
    assert repro._train_config("cnn-gda")[1].noise == "once"
    assert repro._train_config("cnn-fgsm-at")[1].mode == "fresh"
    assert repro._train_config("cnn-vat")[1].params() == \
        experiments.Reproduction("mnist", "quick", tmp_path)._train_config("cnn-vat")[1].params()
    quick_repro = experiments.Reproduction("mnist", "quick", tmp_path)
    assert quick_repro._train_config("cnn-gda")[1].noise == "fresh"
    assert quick_repro._train_config("cnn-fgsm-at")[1].mode == "static"
    # Every setting of the authors' code is listed, with what this profile does with it.
    settings = {row[0]: row[4] for row in authors.AUTHORS_SETTINGS}
    assert settings["JSMA theta"] == "1.0" and settings["C&W confidence"] == "10"
    assert settings["FGSM labels"].startswith("not applied")


@pytest.mark.slow  # a whole CIFAR-10 grid: see test_quick_grid_end_to_end_and_resume
def test_cifar10_quick_has_figure5_table5_and_their_claims(fake_data_dir, tmp_path,
                                                            monkeypatch):
    import numpy as np

    from advbench.data import _write_cifar_bin

    rng = np.random.default_rng(0)
    arrays = {split: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                      np.arange(n) % 10) for split, n in (("train", 100), ("test", 30))}
    _write_cifar_bin(arrays, tmp_path / "data" / "cifar-10-batches-bin")
    cifar = experiments.profile_for("cifar10", "quick")
    assert cifar.experiments == ("figure4", "table4") and cifar.seeds == 5
    monkeypatch.setitem(profiles.DATASET_PROFILES, ("cifar10", "quick"), dataclasses.replace(
        cifar, epochs=1, static_epochs=1, patience=1, train_limit=40, test_limit=12,
        expensive_limit=4, eps_grid="0.1:0.3:0.1", seeds=2, attack_params=TINY.attack_params))
    result = CliRunner().invoke(main, [
        "reproduce", "--dataset", "cifar10", "--profile", "quick", "--out", str(tmp_path),
        "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "zoo"), "-q"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "cifar10" / "quick" / "report.md").read_text()
    assert "## Figure 5" in text and "## Table 5" in text and "(51.55)" in text
    assert "JPEG (quality 75) re-encode" in text
    assert "## Figure 3" not in text and "## Table 1" not in text
    claims = [line for line in text.splitlines() if line.startswith("### Claim ")]
    assert [c.split(" (")[0] for c in claims] == [
        "### Claim 6", "### Claim 7", "### Claim 10", "### Claim 11", "### Claim 13"]
    assert (tmp_path / "cifar10" / "quick" / "figure5.png").stat().st_size > 10_000


def test_cifar10_authors_profile_is_the_cifar10_grid_with_the_authors_settings():
    cifar, authors_mnist = profiles.profile_for("cifar10", "quick"), profiles.PROFILES["authors"]
    profile = profiles.profile_for("cifar10", "authors")
    assert (profile.name, profile.models, profile.experiments, profile.train_limit,
            profile.seeds) == ("authors", cifar.models, cifar.experiments, cifar.train_limit,
                               cifar.seeds)
    assert profile.attack_params["jsma"]["theta"] == 1.0
    assert profile.attack_params["cw-l2"]["confidence"] == 10.0
    assert profile.attack_params["deepfool"] == authors_mnist.attack_params["deepfool"]
    assert profile.defense_params == authors_mnist.defense_params
    assert profile.eps_grid == "0.1:0.3:0.1"


def test_the_defenses_certified_section(fake_data_dir, tmp_path, monkeypatch):
    """Issue 23: reproduce certifies GDA + RELU, GDA + BRELU (the paper's sigma) and GDA as
    Cohen et al. train it (its own train stage), beside the base models' empirical L2
    robustness on the same images, and states what the certificates add."""
    from advbench.score.certify import read_certification
    from advbench.paper.certified import compare

    monkeypatch.setitem(experiments.PROFILES, "quick", dataclasses.replace(
        TINY, models=("cnn-gda", "cnn-brelu-gda"), experiments=("certified",), seeds=1,
        certify_attack="deepfool"))
    import io

    from rich.console import Console

    from advbench.core.progress import Progress

    log = io.StringIO()
    repro = experiments.Reproduction("mnist", "quick", tmp_path, data_dir=str(fake_data_dir),
                                     models_dir=tmp_path / "zoo", progress=Progress(
                                         console=Console(file=log, width=400), interval=1e9))
    ids = [s.id for s in repro.stages()]
    assert ids == ["train:cnn-gda", "train:cnn-brelu-gda", "train:cnn-gda-cohen",
                   "certified:cnn-gda", "certified:cnn-brelu-gda", "certified:cnn-gda-cohen"]
    report = repro.run().read_text()
    certified = repro.results["certified"]
    assert {name: entry["sigma"] for name, entry in certified.items()} == {
        "cnn-gda": 0.3, "cnn-brelu-gda": 0.3, "cnn-gda-cohen": 0.25}
    for name, entry in certified.items():
        attrs, arrays = read_certification(entry["artifacts"][0])
        assert attrs["sigma"] == entry["sigma"] and attrs["n"] == 100 and attrs["n0"] == 10
        assert entry["samples"] == 10 == len(arrays["radius"])
        accuracy = entry["certified"]["certified_accuracy"]
        radius = np.where(arrays["correct"], arrays["radius"], -1.0)
        assert accuracy["0.5"] == pytest.approx(np.mean(radius >= 0.5))
        assert list(accuracy.values()) == sorted(accuracy.values(), reverse=True)
        assert set(entry["empirical"]["robust"]) == {"0", "0.25", "0.5", "0.75", "1"}
    assert "## The defenses, certified\n" in report
    assert "![The defenses, certified](certified.png)" in report
    assert (tmp_path / "mnist" / "quick" / "certified.png").stat().st_size > 10_000
    for entry in certified.values():
        curve = entry["empirical"]["curve"]
        assert curve["radius"] == entry["certified"]["curve"]["radius"]
        assert curve["robust_accuracy"] == sorted(curve["robust_accuracy"], reverse=True)
    assert ("| GDA + BRELU | 0.3 | certified (smoothed) | "
            f"{100 * certified['cnn-brelu-gda']['certified']['certified_accuracy']['0']:.1f} |"
            ) in report
    assert "| GDA + RELU |  | empirical (deepfool, base model) | " in report
    verdict = compare(certified, "cnn-brelu-gda", "cnn-gda", 0.5)["verdict"]
    said = {"higher": "becomes a measurable certificate here",
            "lower": "does not become a certificate here",
            "no measurable difference": "does not become a measurable certificate here"}
    assert ("What this adds to the paper's argument: the claim that BRELU makes the GDA "
            f"network smoother {said[verdict]}") in report
    assert "GDA trained as Cohen et al. train (one noisy copy per image per step, sigma 0.25)" \
        in report
    # Every stage prints its parameters (issue 19): training, certification, the attack.
    lines = log.getvalue().splitlines()
    assert ("train cnn relu, defense gda-cohen: sigma=0.25; epochs 1, batch size 128, "
            "learning rate 0.001, patience 11; seed 0; mnist train split, limit 60") in lines, lines
    assert any(line.startswith("certify ") and "sigma 0.25, n0 10, n 100, alpha 0.001" in line
               for line in lines)
    assert any(line.startswith("deepfool: norm=l2 max_iter=20 ") and line.endswith(
        "; seed 0; 10 samples (class-balanced) of mnist test (start 0, batch size 256)")
        for line in lines)


def test_stage_times_survive_an_interrupt_and_resumes(tmp_path, monkeypatch):
    """Trial 3: after an interrupted `reproduce --profile demo` and two reruns the report gave
    the reruns' moments (train 0.0 s "this run"; certify 9.4 s of a 36 s certification). A
    stage's time is now the time of the run(s) that did its work: kept across resumes, the
    parts of a stage resumed from a checkpoint summed. A fake clock drives the stages."""
    from advbench.paper import report

    clock = [0.0]
    monkeypatch.setattr(experiments.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(report, "write_report", lambda repro: repro.root / "report.md")
    done = set()

    def work(name, seconds, interrupt=False):
        def run():
            if name in done:  # found complete on disk
                clock[0] += 0.01
                return
            clock[0] += seconds
            if interrupt:
                raise KeyboardInterrupt
            done.add(name)
        return run

    def invocation(plan):
        repro = experiments.Reproduction("toy", "quick", tmp_path)
        monkeypatch.setattr(repro, "stages", lambda: [
            experiments.Stage(name, work(name, s, cut)) for name, s, cut in plan])
        return repro

    first = invocation([("train", 250.0, False), ("certify", 30.0, True)])
    with pytest.raises(KeyboardInterrupt):
        first.run()
    second = invocation([("train", 250.0, False), ("certify", 6.0, False),
                         ("evaluate", 5.0, False)])
    second.run()
    assert second.timings == {"train": (250.0, "an earlier run"),
                              "certify": (36.0, "this run and earlier ones"),
                              "evaluate": (5.0, "this run")}
    third = invocation([("train", 250.0, False), ("certify", 6.0, False),
                        ("evaluate", 5.0, False)])
    third.run()
    assert third.timings == {"train": (250.0, "an earlier run"),
                             "certify": (36.0, "an earlier run"),
                             "evaluate": (5.0, "an earlier run")}
    assert report.stage_times_section(third.timings) == [
        "## Stage times\n", "Sum over the stages when they did their work: 4.8 min.\n",
        "| stage | seconds | measured in |\n|---|---|---|\n"
        "| train | 250.0 | an earlier run |\n| certify | 36.0 | an earlier run |\n"
        "| evaluate | 5.0 | an earlier run |"]
    # A timings.json of the older form ({stage: seconds}) reads as done.
    (tmp_path / "old.json").write_text(json.dumps({"train": 12.5}))
    assert experiments.StageTimes(tmp_path / "old.json").done("train", 0.1) == (
        12.5, "an earlier run")


def test_a_stage_run_alone_records_its_time(tmp_path, monkeypatch):
    """Trial 3: `reproduce --stage ID` (one stage, a cluster job) recorded no time, so the
    report's stage times showed the final run's moment of finding it complete. A stage run
    alone keeps its seconds in timings.json, interrupted parts too."""
    from advbench.paper import report

    clock = [0.0]
    monkeypatch.setattr(experiments.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(report, "write_report", lambda repro: repro.root / "report.md")
    state = {"certify": 0}

    def train():
        clock[0] += 40.0 if "train" not in state else 0.01
        state["train"] = 1

    def certify():
        state["certify"] += 1
        clock[0] += 0.01 if state["certify"] > 2 else 20.0
        if state["certify"] == 1:
            raise KeyboardInterrupt

    def invocation():
        repro = experiments.Reproduction("toy", "quick", tmp_path)
        monkeypatch.setattr(repro, "stages", lambda: [
            experiments.Stage("train", train, id="train:x"),
            experiments.Stage("certify", certify, id="certified:x")])
        return repro

    from advbench import stages

    # `reproduce --stage ID` is stages.reproduce(..., stage=ID): it goes through run_stage.
    stages.reproduce(invocation(), tmp_path, stage="train:x")
    with pytest.raises(KeyboardInterrupt):
        invocation().run_stage("certified:x")
    invocation().run_stage("certified:x")
    timings = json.loads((tmp_path / "toy" / "quick" / "timings.json").read_text())
    assert timings == {"train": {"seconds": 40.0, "done": True},
                       "certify": {"seconds": 40.0, "done": True}}
    final = invocation()
    final.run()
    assert final.timings == {"train": (40.0, "an earlier run"),
                             "certify": (40.0, "an earlier run")}


def test_stages_running_at_once_keep_each_others_times(tmp_path):
    """Stages of one graph run at once (--engine ray, a cluster's --stage jobs): each update
    re-reads timings.json under its lock, so no stage's time overwrites another's."""
    path = tmp_path / "timings.json"
    first, second = experiments.StageTimes(path), experiments.StageTimes(path)
    first.part("certify", 3.0)
    second.done("train", 5.0)
    assert first.done("certify", 4.0) == (7.0, "this run and earlier ones")
    assert json.loads(path.read_text()) == {"train": {"seconds": 5.0, "done": True},
                                            "certify": {"seconds": 7.0, "done": True}}
