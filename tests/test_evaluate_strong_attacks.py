"""`evaluate` and its gate on the artifacts of AutoAttack's attacks (issue 10): robust
accuracy at eps, per attack (adv_accuracy@ATTACK) and at the worst over the artifacts."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.cli import EXIT_GATE_FAILED, main
from advbench.run.artifacts import read_attack_artifact

# Small budgets: the run, not the attack's strength, is under test here.
STRONG_ATTACKS = {
    "apgd-ce": ["--n-iter", "5"],
    "apgd-dlr": ["--n-iter", "5"],
    "apgd-t": ["--n-iter", "5", "--n-target-classes", "2"],
    "square": ["--n-queries", "30"],
    "autoattack": ["--n-iter", "5", "--n-target-classes", "2", "--n-queries", "30"],
    "fab-t": ["--n-iter", "5", "--n-target-classes", "2"],
}


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("attack", sorted(STRONG_ATTACKS))
def test_evaluate_and_gate_take_strong_attack_artifacts(attack, trained_tiny_cnn,
                                                        fake_data_dir, tmp_path):
    model = trained_tiny_cnn[0]
    common = ["--limit", "20", "--data-dir", fake_data_dir]
    out = tmp_path / f"{attack}.h5"
    crafted = invoke(["attack", model, "--attack", attack, "--eps", "0.2",
                      *STRONG_ATTACKS[attack], *common, "-o", out, "-q"])
    assert crafted.exit_code == 0, crafted.output
    _, arrays = read_attack_artifact(out)
    robust = float(np.mean(arrays["pred_adv"] == arrays["y"]))

    scored = invoke(["evaluate", model, out, *common, "--no-sensitivity", "--json", "-q",
                     "--fail-under", f"adv_accuracy@{attack}={robust:.4f}"])
    assert scored.exit_code == 0, scored.output
    summary = json.loads(scored.stdout)
    entry = summary["artifacts"][0]
    assert entry["attack"] == attack and entry["setting"] == "white-box"
    assert entry["attack_params"]["eps"] == 0.2
    assert entry["adv_accuracy"] == pytest.approx(robust)
    assert summary["metrics"]["adv_accuracy"] == pytest.approx(robust)
    assert summary["gate"]["passed"] is True

    threshold = round(robust + 0.05, 4)
    gated = invoke(["evaluate", model, out, *common, "--no-sensitivity", "-q",
                    "--fail-under", f"adv_accuracy={threshold}"])
    assert gated.exit_code == EXIT_GATE_FAILED
    assert f"gate failed: adv_accuracy {robust:.4f} is under {threshold:g}" in gated.output


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hold_returns_when_x_minus_eps_is_near_zero(norm):
    """A pixel equal to eps (0.2 = 51/255 at eps 0.2; 8/255 at CIFAR's 8/255) pushed to 0:
    stepping by ulps of x_adv near 0 never reached the ball (the attack hung)."""
    from advbench.attacks.norms import NORMS

    x = np.full((2, 4, 4, 1), np.float32(51 / 255))
    eps = 0.2 if norm == "linf" else 0.8
    x_adv = np.zeros_like(x)
    out = NORMS[norm].hold(x, x_adv, eps).numpy()
    delta = out.astype(np.float64) - x
    size = np.abs(delta).max() if norm == "linf" else np.sqrt((delta[0] ** 2).sum())
    assert size <= eps and size > eps - 1e-6 and out.min() >= 0.0


# L1 takes 15 s on an idle core: slow; L-inf guards the stamp and the table.
@pytest.mark.parametrize("norm, eps", [("linf", "0.2"),
                                       pytest.param("l1", "3", marks=pytest.mark.slow)])
def test_evaluate_stamps_the_protocol_and_prints_autoattacks_table(norm, eps, trained_tiny_cnn,
                                                                   fake_data_dir, tmp_path):
    """Every robust accuracy names its protocol (attack and version, norm, eps, images, seed),
    and an autoattack artifact's per-attack table comes with it (issue 22)."""
    model = trained_tiny_cnn[0]
    common = ["--limit", "20", "--data-dir", fake_data_dir]
    out = tmp_path / "aa.h5"
    crafted = invoke(["attack", model, "--attack", "autoattack", "--norm", norm, "--eps", eps,
                      *STRONG_ATTACKS["autoattack"], *common, "--seed", "3", "-o", out, "-q"])
    assert crafted.exit_code == 0, crafted.output
    _, arrays = read_attack_artifact(out)
    scored = invoke(["evaluate", model, out, *common, "--no-sensitivity", "--json", "-q",
                     "--csv", tmp_path / "eval.csv"])
    assert scored.exit_code == 0, scored.output
    entry = json.loads(scored.stdout)["artifacts"][0]
    stamp = f"autoattack standard, {norm} eps={float(eps):g}, 20 images, seed 3"
    assert entry["protocol"] == stamp
    table = entry["autoattack_table"]
    assert table["protocol"].startswith(f"autoattack standard, {norm} eps={float(eps):g}")
    members = ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert list(table["after"]) == ["clean"] + [m for m in members if m not in table["skipped"]]
    assert list(table["after"].values())[-1] == pytest.approx(entry["adv_accuracy"])
    assert all(a >= b for a, b in zip(list(table["after"].values()),
                                      list(table["after"].values())[1:]))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "eval.csv").read_text())))
    by_metric = {row["metric"]: row for row in rows}
    assert by_metric["adv_accuracy"]["protocol"] == stamp
    assert by_metric["robust_accuracy_after_apgd-ce"]["protocol"] == stamp
    assert rows[0]["setting"] == "clean" and rows[0]["protocol"] == ""  # the model's own

    shown = invoke(["evaluate", model, out, *common, "--no-sensitivity"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "seed=3" in text
    assert f"{stamp} on" in text and "robust accuracy after each attack" in text
