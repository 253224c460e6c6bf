"""`evaluate` and its gate on the artifacts of AutoAttack's attacks (issue 10): robust
accuracy at eps, per attack (adv_accuracy@ATTACK) and at the worst over the artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.artifacts import read_attack_artifact
from advbench.cli import EXIT_GATE_FAILED, main

# Small budgets: the run, not the attack's strength, is under test here.
STRONG_ATTACKS = {
    "apgd-ce": ["--n-iter", "5"],
    "apgd-dlr": ["--n-iter", "5"],
    "apgd-t": ["--n-iter", "5", "--n-target-classes", "2"],
    "square": ["--n-queries", "30"],
    "autoattack": ["--n-iter", "5", "--n-target-classes", "2", "--n-queries", "30"],
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

    gated = invoke(["evaluate", model, out, *common, "--no-sensitivity", "-q",
                    "--fail-under", f"adv_accuracy={robust + 0.05:.4f}"])
    assert gated.exit_code == EXIT_GATE_FAILED
    assert f"gate failed: adv_accuracy {robust:.4f} is under {robust + 0.05:.4f}" in gated.output
