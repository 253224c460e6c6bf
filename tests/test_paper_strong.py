"""`advbench reproduce`'s section "The defenses under strong white-box attacks"
(advbench.paper.strong) on a tiny profile and the synthetic digits."""

import dataclasses
import types

import numpy as np
import pytest

from advbench.core.errors import ArtifactError
from advbench.paper import experiments, strong
from advbench.paper.report import LABELS

from test_paper_experiments import TINY

ONE_MODEL = dataclasses.replace(TINY, name="quick", models=("cnn",), experiments=("strong",),
                                seeds=1)


def row(eps, fgsm, ce, t, square, clean=0.9):
    return {"eps": eps, "samples": 200, "clean": clean, "fgsm": fgsm,
            "after": {"apgd-ce": ce, "apgd-t": t, "square": square}, "autoattack": square,
            "seconds": 12.0}


def test_audit_verdict_runs_the_audit(monkeypatch):
    from advbench.score import audit as auditing

    calls = []

    def audit(model, x, y, *, eps, checks, settings, seed, surrogate):
        calls.append((model, x.shape, y.shape, eps, checks, settings.n_iter, seed))
        assert surrogate() == ("surrogate", "mnist", "data", 7, 3)
        checks = [{"name": "gradient-free-vs-gradient", "verdict": "fail"},
                  {"name": "logits-and-gradients", "verdict": "pass"}]
        return types.SimpleNamespace(summary={"verdict": "fail", "checks": checks})

    monkeypatch.setattr(auditing, "audit", audit)
    monkeypatch.setattr(auditing, "train_surrogate", lambda dataset, *, data_dir, settings, seed: (
        "surrogate", dataset, data_dir, settings.n_iter, seed))
    x, y = np.zeros((3, 28, 28, 1), np.float32), np.zeros(3, np.int64)
    logged = []
    progress = types.SimpleNamespace(log=logged.append)
    verdict = strong.audit_verdict("model", x, y, (0.1, 0.3, 0.2),
                                   {"checks": ("logits-and-gradients",), "n_iter": 7},
                                   dataset="mnist", data_dir="data", seed=3, limit=3,
                                   progress=progress)
    # The parameter line `advbench audit` prints (cli._echo_audit_parameters), every setting.
    assert logged == [auditing.audit_parameters(
        0.3, "linf", ("logits-and-gradients",), auditing.AuditSettings(n_iter=7), seed=3,
        samples="3 samples (class-balanced) of mnist test (start 0, batch size 128)")]
    assert logged[0].startswith("audit: eps=0.3 norm=linf checks=1 ")
    assert "n_iter=7" in logged[0] and logged[0].endswith(
        "; seed 3; 3 samples (class-balanced) of mnist test (start 0, batch size 128)")
    assert verdict == {"verdict": "fail", "flags": ["gradient-free-vs-gradient: fail"],
                       "source": "advbench audit (logits-and-gradients)"}
    assert calls == [("model", (3, 28, 28, 1), (3,), 0.3, ("logits-and-gradients",), 7, 3)]


def test_section_lines():
    results = {"strong": {"cnn-feature-squeezing": {
        "eps": [0.1], "rows": [row(0.1, 0.62, 0.10, 0.05, 0.04)],
        "audit": {"verdict": "pass", "flags": [], "source": "advbench audit"}}}}
    text = "\n".join(strong.strong_section(results, LABELS))
    assert text.startswith("## The defenses under strong white-box attacks\n")
    assert "on 200 test images per model" in text
    assert "| Feature squeezing | 0.1 | 90.0 | 62.0 | 10.0 | 5.0 | 4.0 | +58.0 | 12 |" in text
    assert "| Feature squeezing | pass | - | advbench audit |" in text
    assert strong.strong_section({}, LABELS) == []


def test_stage_on_a_tiny_model(monkeypatch, fake_data_dir, tmp_path):
    monkeypatch.setitem(experiments.PROFILES, "quick", ONE_MODEL)
    repro = experiments.Reproduction("mnist", "quick", tmp_path,
                                     data_dir=str(fake_data_dir), models_dir=tmp_path / "zoo")
    stages = [s for s in repro.stages() if s.id.startswith("strong:")]
    assert [(s.id, s.needs) for s in stages] == [("strong:cnn", ("train:cnn",))]
    repro.run_stage("train:cnn")
    entry = strong.run_strong(repro, "cnn")
    assert entry["eps"] == [0.1, 0.2, 0.3]
    for r in entry["rows"]:
        assert r["samples"] == ONE_MODEL.strong_limit
        after = list(r["after"].values())
        # The standard version's members in the reference's order (FAB-T since issue 22).
        assert list(r["after"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
        # Cumulative: each member only lowers robust accuracy; the ensemble is the last.
        assert r["clean"] >= after[0] >= after[1] >= after[2] >= after[3] == r["autoattack"]
        assert 0.0 <= r["fgsm"] <= 1.0
    assert entry["audit"]["source"] == "advbench audit (logits-and-gradients, accuracy-vs-eps)"
    assert entry["audit"]["verdict"] in ("pass", "warn", "fail")
    # A second Reproduction (the report after --stage) finds the artifacts and the summary.
    runs = sorted((tmp_path / "mnist" / "quick" / "runs").glob("*.h5"))
    assert len(runs) == 4  # three ensembles and one FGSM curve
    mtimes = [p.stat().st_mtime_ns for p in runs]
    again = experiments.Reproduction("mnist", "quick", tmp_path, data_dir=str(fake_data_dir),
                                     models_dir=tmp_path / "zoo")
    assert strong.run_strong(again, "cnn") == entry
    assert [p.stat().st_mtime_ns for p in runs] == mtimes
    assert "## The defenses under strong white-box attacks" in again.run().read_text()


def test_row_from_another_attack_is_refused(trained_tiny_cnn, fake_data_dir, tmp_path):
    from advbench.attacks import make_attack
    from advbench.run.runner import AttackRun, attack_split

    model_path, model, meta = trained_tiny_cnn
    run = AttackRun(model_path=str(model_path), dataset="mnist", limit=4,
                    data_dir=str(fake_data_dir))
    path = attack_split(run, make_attack("fgsm", eps=0.1), model, meta, tmp_path / "fgsm.h5")
    with pytest.raises(ArtifactError) as error:
        strong.strong_row(path, ("apgd-ce", "apgd-t", "square"), 0.5)
    assert str(error.value) == (f"{path} has no broken_by array; it is not an autoattack "
                                "artifact: delete it and run the stage again")
