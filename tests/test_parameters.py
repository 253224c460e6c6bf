"""Every numeric option validated once, at parse time (issue 14, "Parameters"): finite, in
range, integers bounded by what can run and by the dtype they reach, and options that do not
apply refused the same way, all as usage errors (exit 2) before any model or data is read.

The table holds every example of the issue; the library checks (advbench.core.checks and the
constructors) give the messages, so the Python API refuses the same values."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from advbench.attacks import make_attack
from advbench.cli import main
from advbench.core.errors import ParameterError
from advbench.defenses import make_defense

# The model file is empty and the data never exist: every bad value must be refused before
# they are read (a missing model file would be refused even earlier, before the flags).
MODEL = "empty-model.h5"
ATTACK = ["attack", MODEL, "--attack"]
TRAIN = ["train", "--data-dir", "no-such-data"]
GRID = math.floor(1.0 / 1e-9)

CASES = [
    # inf accepted before (only NaN was checked): training wrote NaN models with exit 0.
    (TRAIN + ["--learning-rate", "inf"], "learning rate must be a finite number, got inf"),
    (TRAIN + ["--defense", "gda", "--gda-sigma", "inf"],
     "gda sigma must be a finite number, got inf"),
    (TRAIN + ["--defense", "vat", "--vat-alpha", "inf"],
     "vat alpha must be a finite number, got inf"),
    (TRAIN + ["--act", "brelu", "--brelu-t", "inf"], "brelu t must be a finite number, got inf"),
    (TRAIN + ["--defense", "fgsm-at", "--at-eps", "inf"],
     "fgsm-at eps must be a finite number, got inf"),
    (TRAIN + ["--defense", "vat", "--vat-eps", "inf"],
     "vat eps must be a finite number, got inf"),
    (TRAIN + ["--learning-rate", "nan"], "learning rate must be a number, got NaN"),
    (ATTACK + ["deepfool", "--overshoot", "inf"], "overshoot must be a finite number, got inf"),
    (ATTACK + ["cw-l2", "--confidence", "inf"], "confidence must be a finite number, got inf"),
    (ATTACK + ["cw-l2", "--learning-rate", "inf"],
     "learning_rate must be a finite number, got inf"),
    (ATTACK + ["cw-l2", "--initial-const", "inf"],
     "initial_const must be a finite number, got inf"),
    (ATTACK + ["pgd", "--step-size", "inf"], "step_size must be a finite number, got inf"),
    (ATTACK + ["vat", "--xi", "inf"], "xi must be a finite number, got inf"),
    # Iteration counts wrapped to 32 bits while the artifact recorded the huge value.
    (ATTACK + ["pgd", "--steps", "4294967298"], "steps must be <= 2147483647, got 4294967298"),
    (ATTACK + ["deepfool", "--max-iter", "4294967298"],
     "max_iter must be <= 2147483647, got 4294967298"),
    (ATTACK + ["cw-l2", "--max-iter", "4294967298"],
     "max_iter must be <= 2147483647, got 4294967298"),
    # Ran until killed, or exhausted memory.
    (ATTACK + ["cw-l2", "--search-steps", str(2 ** 40)],
     "binary_search_steps must be <= 30, got 1099511627776"),
    (ATTACK + ["cw-l2", "--initial-const", "1e9"],
     "initial_const must be <= 1000000.0, got 1000000000.0"),
    (ATTACK + ["vat", "--power-iterations", str(2 ** 32 + 1)],
     "power_iterations must be <= 100, got 4294967297"),
    (ATTACK + ["fab-t", "--eta", "0.5"], "eta must be >= 1.0, got 0.5"),
    (ATTACK + ["fab", "--final-search", "1000"], "final_search must be <= 100, got 1000"),
    (ATTACK + ["fgsm-min", "--eps-max", "inf"], "eps_max must be a finite number, got inf"),
    (ATTACK + ["fgsm-min", "--eps-step", "1e-9"],
     f"eps_max / eps_step gives {GRID} grid points, more than 100000; use a larger eps_step"),
    (TRAIN + ["--defense", "gda", "--gda-copies", "1000000000"],
     "gda copies must be <= 100, got 1000000000"),
    # Seeds: every consumer takes [0, 2**32).
    (ATTACK + ["fgsm", "--seed", "-1"], "seed must be >= 0, got -1"),
    (ATTACK + ["fgsm", "--seed", str(2 ** 70)],
     "seed must be <= 4294967295, got 1180591620717411303424"),
    (TRAIN + ["--seed", str(2 ** 40)], "seed must be <= 4294967295, got 1099511627776"),
    (["reproduce", "--seed", "-1", "--out", "no-such-out"], "seed must be >= 0, got -1"),
    (["evaluate", MODEL, "--seed", str(2 ** 32)], "seed must be <= 4294967295, got 4294967296"),
    (["transfer", "--source", MODEL, "--target", MODEL, "--seed", "-5"],
     "seed must be >= 0, got -5"),
    # An eps range whose stop overflows to infinity.
    (ATTACK + ["fgsm", "--eps", "0:1e400:0.1"], "Invalid value for '--eps': eps range "
     "'0:1e400:0.1' must have finite start, stop and step"),
    (["evaluate", MODEL, "--eps", "0:1e400:0.1"], "Invalid value for '--eps': eps range "
     "'0:1e400:0.1' must have finite start, stop and step"),
    # Batch sizes, limits and starts.
    (["evaluate", MODEL, "--batch-size", "0"], "batch size must be >= 1, got 0"),
    (ATTACK + ["fgsm", "--batch-size", "0"], "batch size must be >= 1, got 0"),
    (ATTACK + ["fgsm", "--batch-size", str(2 ** 31)],
     "batch size must be <= 2147483647, got 2147483648"),
    (ATTACK + ["fgsm", "--limit", "0"], "limit must be >= 1, got 0"),
    (["evaluate", MODEL, "--start", "-1"], "start must be >= 0, got -1"),
    (TRAIN + ["--epochs", str(2 ** 31)], "epochs must be <= 2147483647, got 2147483648"),
    (["evaluate", MODEL, "--eps", "0.1", "--alpha", "inf"],
     "alpha must be a finite number, got inf"),
    # Options that do not apply: one rule, a usage error.
    (TRAIN + ["--defense", "none", "--gda-sigma", "0.2"],
     "--gda-sigma does not apply to --defense none"),
    (TRAIN + ["--brelu-t", "0.5"], "--brelu-t does not apply to --act relu"),
    (ATTACK + ["fgsm", "--steps", "3"], "--steps does not apply to --attack fgsm"),
    (ATTACK + ["deepfool", "--target", "random"],
     "attack 'deepfool' is untargeted only; drop --target"),
    (ATTACK + ["fgsm-min", "--search", "authors", "--target", "random"],
     "attack 'fgsm-min' with search='authors' is untargeted only; drop --target"),
    (ATTACK + ["fgsm", "--steps", "3", "--theta", "1"],
     "--steps, --theta do not apply to --attack fgsm"),
    (ATTACK + ["fab", "--norm", "l0"],
     "--norm of --attack fab is one of linf, l2, l1, got 'l0' (l0 is for fmn)"),
    (ATTACK + ["pgd", "--norm", "l1"], "--norm of --attack pgd is one of linf, l2, got 'l1' (l1 "
     "is for apgd-ce, apgd-dlr, apgd-t, autoattack, fab, fab-t, fmn, square)"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(c[0][:4] + c[0][-2:])
                                                       for c in CASES])
def test_bad_values_are_usage_errors_at_parse_time(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / MODEL).touch()
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.output.rstrip().splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in result.output
    # Nothing written, nothing started (keras-home is Keras' own folder, which the autouse
    # fixture points into tmp_path; Keras makes it when a test is the first to import it).
    assert [p.name for p in tmp_path.iterdir() if p.name != "keras-home"] == [MODEL]


@pytest.mark.parametrize("make, message", [
    (lambda: make_attack("pgd", steps=2 ** 32 + 2), "steps must be <= 2147483647, got 4294967298"),
    (lambda: make_attack("pgd", step_size=math.inf), "step_size must be a finite number, got inf"),
    (lambda: make_attack("cw-l2", binary_search_steps=31),
     "binary_search_steps must be <= 30, got 31"),
    (lambda: make_attack("fgsm-min", eps_step=1e-6),
     f"eps_max / eps_step gives {math.floor(1.0 / 1e-6)} grid points, more than 100000; use a "
     "larger eps_step"),
    (lambda: make_defense("gda", "mnist", copies=101), "gda copies must be <= 100, got 101"),
    (lambda: make_defense("vat", "mnist", power_iterations=2 ** 32 + 1),
     "vat power iterations must be <= 100, got 4294967297"),
    (lambda: make_defense("vat", "mnist", alpha=math.inf),
     "vat alpha must be a finite number, got inf"),
])
def test_the_python_api_has_the_same_bounds(make, message):
    with pytest.raises(ParameterError) as error:
        make()
    assert str(error.value) == message


# -- the audit's settings: declared once (advbench.score.AUDIT_PARAMS) --------------------------
def test_every_audit_setting_is_declared_once_with_its_flag():
    import dataclasses

    from advbench.score import AUDIT_PARAMS, AUDIT_SETTING_CHECKS
    from advbench.score.audit import AuditSettings

    assert [f.name for f in dataclasses.fields(AuditSettings)] == [p.name for p in AUDIT_PARAMS]
    flagged = [p for p in AUDIT_PARAMS if p.cli_flag is not None]
    assert sorted(p.name for p in flagged) == sorted(AUDIT_SETTING_CHECKS)
    text = " ".join(CliRunner().invoke(main, ["audit", "--help"], terminal_width=1000)
                    .output.split())
    for p in flagged:
        kind = {int: "INTEGER", float: "FLOAT"}[p.type]
        assert f"{p.cli_flag} {kind} {p.help} [default: {p.default}]" in text
    for p in AUDIT_PARAMS:  # the declared bounds are the ones the settings hold
        if p.type in (int, float) and p.low is not None:
            bad = p.low - 1 if p.low_inclusive else p.low
            with pytest.raises(ParameterError, match=f"^{p.name.replace('_', '-')} must be"):
                AuditSettings(**{p.name: p.type(bad)}).validate()
