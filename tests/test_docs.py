"""The docs' generated blocks (docs/cli.md's `--help` of every command, the attack and defense
parameter tables) are current: they are derived from the commands and the declarations
(``tools/docgen.py``), and a change to either without regenerating fails here and in
``make lint``."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def docgen():
    spec = importlib.util.spec_from_file_location("docgen", ROOT / "tools" / "docgen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_blocks_are_current(docgen):
    assert docgen.stale_files(write=False) == []


def test_every_command_has_its_help_in_the_cli_reference(docgen):
    from test_cli import COMMANDS

    text = (ROOT / "docs" / "cli.md").read_text()
    for path in COMMANDS:
        assert f"<!-- generated: help {' '.join(path)} -->" in text, path


def test_the_check_fails_on_a_stale_block(docgen, tmp_path, monkeypatch, capsys):
    """--check exits 1 with one line per stale file, and rewrites nothing."""
    (tmp_path / "docs").mkdir()
    stale = "<!-- generated: help merge -->\nhand-edited\n<!-- end generated -->\n"
    (tmp_path / "docs" / "x.md").write_text(stale)
    monkeypatch.setattr(docgen, "ROOT", tmp_path)
    assert docgen.main(["--check"]) == 1
    assert capsys.readouterr().err == (
        "docs/x.md: generated blocks are stale; run `python tools/docgen.py`\n")
    assert (tmp_path / "docs" / "x.md").read_text() == stale
    assert docgen.main([]) == 0
    assert (tmp_path / "docs" / "x.md").read_text().startswith(
        "<!-- generated: help merge -->\n```\nUsage: advbench merge [OPTIONS] SHARDS...\n")


def test_an_unknown_block_kind_is_refused(docgen):
    with pytest.raises(SystemExit, match="unknown generated block 'tabel'"):
        docgen.regenerate("<!-- generated: tabel -->\n<!-- end generated -->")


def test_module_runs_without_tensorflow(docgen):
    """The docs build from the TensorFlow-free registries only (fast in make lint)."""
    import subprocess

    code = ("import runpy, sys; sys.argv = ['docgen', '--check']\n"
            "try:\n    runpy.run_path('tools/docgen.py', run_name='__main__')\n"
            "except SystemExit: pass\nprint('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.stdout == "False\n", result.stderr
