"""CLI tests: help for every command, exact error lines, exit codes, stdout = artifact path."""

import pathlib
import re

import click
import pytest
from click.testing import CliRunner

from advbench.attacks import ATTACK_CLASSES, ATTACK_SPECS
from advbench.cli import main
from advbench.defenses import DEFENSE_SPECS

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def all_commands(group=main, prefix=()):
    for name, command in group.commands.items():
        path = prefix + (name,)
        yield path
        if isinstance(command, click.Group):
            yield from all_commands(command, path)


COMMANDS = sorted(all_commands())


def invoke(args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_for_every_command(path):
    result = invoke([*path, "--help"])
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: main {' '.join(path)} [OPTIONS]")


def documented_sections() -> dict[str, str]:
    """docs/usage.md's sections headed "advbench COMMAND" (any level), by command, with
    their text up to the next heading."""
    sections: dict[str, str] = {}
    current = None
    for line in DOCS.read_text().splitlines():
        heading = re.fullmatch(r"#+\s+(.*?)\s*", line)
        if heading:
            match = re.fullmatch(r"`?advbench ([a-z -]+?)`?", heading.group(1))
            current = match.group(1) if match else None
            if current is not None:
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_documented(path):
    """Each command has its own section ("## advbench attack") with text in it; a group
    (``data``) is documented by its subcommands' sections."""
    sections = documented_sections()
    name = " ".join(path)
    if isinstance(main.get_command(click.Context(main), path[0]), click.Group) and len(path) == 1:
        assert [s for s in sections if s.startswith(name + " ")], f"no section for {name} *"
        return
    assert name in sections, f"docs/usage.md has no heading 'advbench {name}'"
    assert sections[name].strip(), f"the section 'advbench {name}' is empty"


def test_every_documented_command_exists():
    assert sorted(documented_sections()) == sorted(
        " ".join(p) for p in COMMANDS
        if not isinstance(main.get_command(click.Context(main), p[0]), click.Group)
        or len(p) > 1)


def test_train_prints_only_the_artifact_path(fake_data_dir, tmp_path):
    out = tmp_path / "m.h5"
    result = CliRunner().invoke(main, [
        "train", "--epochs", "1", "--limit", "40", "--data-dir", str(fake_data_dir),
        "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{out}\n"
    assert out.exists()
    listed = invoke(["models", out, "--json"])
    assert '"defense": "none"' in listed.output
    # Piped (as here), the table keeps its full width: the path is not cut to 80 columns.
    table = CliRunner().invoke(main, ["models", str(out)])
    assert table.exit_code == 0, table.output
    assert str(out) in table.stderr and "…" not in table.stderr


def test_train_default_path_is_the_zoo_store(fake_data_dir, tmp_path):
    result = CliRunner().invoke(main, [
        "train", "--act", "brelu", "--defense", "gda", "--gda-copies", "1", "--epochs", "1",
        "--limit", "40", "--data-dir", str(fake_data_dir), "--models-dir", str(tmp_path),
        "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "mnist-cnn-brelu-gda.h5")


@pytest.mark.parametrize("args, code, message", [
    (["--defense", "gdx"], 2, "Invalid value for '--defense': 'gdx' is not one of"),
    (["--defense", "none", "--gda-sigma", "0.2"], 2,
     "Error: --gda-sigma does not apply to --defense none"),
    (["--defense", "gda", "--gda-sigma", "-1"], 2, "Error: gda sigma must be >= 0.0, got -1.0"),
    (["--defense", "gda", "--gda-copies", "-2"], 2, "Error: gda copies must be >= 0, got -2"),
    (["--act", "brelu", "--brelu-t", "0"], 2, "Error: brelu t must be > 0.0, got 0.0"),
    (["--epochs", "0"], 2, "Error: epochs must be >= 1, got 0"),
    (["--defense", "label-smoothing", "--at-eps", "0.1"], 2,
     "Error: --at-eps does not apply to --defense label-smoothing"),
])
def test_train_bad_flags_fail_before_any_work(args, code, message, tmp_path):
    result = invoke(["train", "--models-dir", tmp_path, *args])
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_train_missing_data_is_one_line(tmp_path):
    result = invoke(["train", "--data-dir", tmp_path / "nothing", "-o", tmp_path / "m.h5"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no mnist files in ")
    assert result.output.count("\n") == 1


def test_attack_prints_path_and_writes_artifact(trained_tiny_cnn, fake_data_dir, tmp_path):
    path, _, _ = trained_tiny_cnn
    out = tmp_path / "adv.h5"
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "fgsm", "--eps", "0.2", "--limit", "20",
        "--data-dir", str(fake_data_dir), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{out}\n"
    again = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "fgsm", "--eps", "0.2", "--limit", "20",
        "--data-dir", str(fake_data_dir), "-o", str(out)])
    assert again.exit_code == 0 and "complete already" in again.stderr


def test_attack_loads_its_samples_once(trained_tiny_cnn, fake_data_dir, tmp_path, monkeypatch):
    from advbench import data

    loads = []
    load = data.load
    monkeypatch.setattr(data, "load", lambda *a, **k: loads.append(a) or load(*a, **k))
    monkeypatch.chdir(tmp_path)
    path, _, _ = trained_tiny_cnn
    # The default output path needs the run key, hence the samples; --json the clean images.
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "fgsm", "--eps", "0.2", "--limit", "8",
        "--data-dir", str(fake_data_dir), "-q", "--json"])
    assert result.exit_code == 0, result.output
    assert loads == [("mnist", "test")]
    assert list((tmp_path / "runs").glob("*-fgsm-*.h5"))


@pytest.mark.parametrize("args, code, message", [
    (["--attack", "nope"], 2, "Invalid value for '--attack'"),
    (["--attack", "fgsm", "--theta", "0.1"], 2, "--theta does not apply to --attack fgsm"),
    (["--attack", "fgsm", "--no-fallback"], 2, "--fallback does not apply to --attack fgsm"),
    (["--attack", "fgsm", "--eps", "-0.1"], 2, "eps must be finite and >= 0, got -0.1"),
])
def test_attack_bad_flags(trained_tiny_cnn, args, code, message):
    path, _, _ = trained_tiny_cnn
    result = invoke(["attack", path, *args])
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_attack_on_a_corrupt_model_file(tmp_path):
    bad = tmp_path / "model.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    result = invoke(["attack", bad, "--attack", "fgsm"])
    assert result.exit_code == 1
    assert result.output == (f"Error: {bad} is not a readable HDF5 file (OSError); it is "
                             "truncated or corrupt: delete it and run the stage again\n")


def test_attack_unknown_zoo_name_lists_what_exists(tmp_path):
    result = invoke(["attack", "resnet", "--attack", "fgsm", "--models-dir", tmp_path])
    assert result.exit_code == 1
    assert "no model 'resnet'" in result.output and "train one with `advbench train`" in result.output


def test_data_info_and_fetch_if_missing(fake_data_dir):
    result = CliRunner().invoke(
        main, ["data", "fetch", "mnist", "--if-missing", "--dest", str(fake_data_dir)])
    assert result.exit_code == 0
    assert result.stdout.strip() == str(fake_data_dir / "mnist")
    info = CliRunner().invoke(main, ["data", "info", "--data-dir",
                                                     str(fake_data_dir)])
    assert info.exit_code == 0 and "mnist" in info.stderr


def test_every_attack_is_documented():
    from advbench.attacks import ATTACKS

    text = (DOCS.parent / "attacks.md").read_text()
    for name, cls in ATTACKS.items():
        assert f"| `{name}` | `{cls.__name__}` |" in text
        for param in cls.param_names:
            assert f"| `{param}` |" in text, (name, param)


@pytest.mark.parametrize("name", sorted(ATTACK_CLASSES))
def test_every_attack_parameter_has_a_flag(name):
    """The CLI can set every parameter of every attack of the registry (issue 10: "every
    parameter a flag"): the flags are derived from the declarations, and only a parameter
    declared without one (JSMA's target_mode, set by --target) has none."""
    from advbench.attacks import ATTACKS
    from advbench.cli import ATTACK_OPTIONS

    # --target sets JSMA's target classes through the driver (one chooser for every attack).
    flags = {param for _, param, _, _ in ATTACK_OPTIONS} | {"target_mode"}
    assert set(ATTACKS[name].param_names) <= flags, set(ATTACKS[name].param_names) - flags


@pytest.mark.parametrize("name", sorted(DEFENSE_SPECS))
def test_every_defense_parameter_has_a_flag(name):
    """`advbench train` can set every parameter of every defense (the VAT defense's xi and
    power_iterations had none while the rows were written by hand)."""
    from advbench.cli import DEFENSE_OPTIONS

    flags = {param for _, _, owners, param, _, _ in DEFENSE_OPTIONS if name in owners}
    assert flags == set(DEFENSE_SPECS[name].defaults())


@pytest.mark.parametrize("specs", [ATTACK_SPECS, DEFENSE_SPECS], ids=["attacks", "defenses"])
def test_a_flag_is_one_declaration(specs):
    """Parameters sharing a flag are one declaration with per-owner defaults (and per-owner
    bounds, choices, optionality or lists where the attack differs: fmn's norms, fab's optional
    eps): same type, help and flag (a
    second, diverging declaration would make the flag's help lie for some owners)."""
    import dataclasses

    by_flag = {}
    for name, spec in specs.items():
        for p in spec.params:
            by_flag.setdefault(p.cli_flag or p.name, []).append(
                (name, dataclasses.replace(p, default=None, low=None, high=None,
                                           choices=None, optional=False, values=False)))
    for flag, declared in by_flag.items():
        assert len({p for _, p in declared}) == 1, (flag, [n for n, _ in declared])


@pytest.mark.parametrize("name", sorted(DEFENSE_SPECS))
def test_every_defense_flag_reaches_the_defense(name, tmp_path):
    """Each flag of a defense, given a value other than its default, sets that parameter of
    the defense `train` builds (through the same path as the command)."""
    from advbench import stages
    from advbench.cli import DEFENSE_OPTIONS

    for _, dest, owners, param, kind, _ in DEFENSE_OPTIONS:
        if name not in owners:
            continue
        p = DEFENSE_SPECS[name].param(param)
        value = (not p.default if p.type is bool else
                 next(c for c in p.choices if c != p.default) if p.choices else
                 p.default + 1 if p.type is int else p.default / 2)
        defense = stages.build_defense(name, "mnist", {dest: value})
        assert getattr(defense, param) == value, (name, param)


def test_cli_stderr_has_no_tensorflow_start_up_logs(trained_tiny_cnn, fake_data_dir, tmp_path):
    """--eps is parsed before the command runs; parsing it imports TensorFlow, which must
    happen quietly like the command's own import (a fresh process, since TensorFlow prints its
    oneDNN and CUDA lines only when it first loads)."""
    import os
    import subprocess
    import sys

    model_path, _, _ = trained_tiny_cnn
    env = {**os.environ, "ADVBENCH_DATA": str(fake_data_dir)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-m", "advbench", "attack", str(model_path),
                           "--attack", "fgsm", "--eps", "0.1", "--limit", "10", "-q",
                           "-o", str(tmp_path / "fgsm.h5")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{tmp_path / 'fgsm.h5'}\n"
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr


def test_train_flags_and_config_share_one_declaration():
    """`advbench train`'s training flags and ``TrainConfig``'s defaults are the same
    declarations (``run.TRAIN_PARAMS``), so the help cannot show another default than a Python
    caller gets."""
    import dataclasses

    from advbench.run import TRAIN_PARAMS
    from advbench.run.train import TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    options = {p.name: p for p in main.commands["train"].params}
    for p in TRAIN_PARAMS:
        assert fields[p.name] == p.default == options[p.name].default, p.name
        assert options[p.name].opts == [p.cli_flag]


def test_evaluate_flags_are_the_declared_choices_of_the_library():
    """`advbench evaluate`'s scoring flags come from ``score.EVALUATE_PARAMS``, whose defaults
    are ``evaluate.evaluate``'s keyword defaults (what a Python caller gets)."""
    import inspect

    from advbench.score import EVALUATE_PARAMS
    from advbench.score.evaluate import evaluate

    keywords = inspect.signature(evaluate).parameters
    options = {p.name: p for p in main.commands["evaluate"].params}
    for p in EVALUATE_PARAMS:
        assert keywords[p.name].default == p.default == options[p.name].default, p.name
        assert options[p.name].opts == [p.cli_flag]
