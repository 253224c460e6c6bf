"""advbench.core.revision: the git commit a report names (issue 12: "say in the report which
commit made it")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from advbench.core import revision


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    (tmp_path / "module.py").write_text("x = 1\n")
    git(tmp_path, "add", "module.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(revision, "SOURCE_ROOT", tmp_path)
    revision.source_revision.cache_clear()
    yield tmp_path
    revision.source_revision.cache_clear()


def test_a_clean_checkout_names_its_commit(checkout):
    found = revision.source_revision()
    assert found == {"commit": git(checkout, "rev-parse", "HEAD"), "dirty": False}
    assert revision.describe(found) == f"commit {found['commit'][:12]}"


def test_changed_tracked_files_make_it_dirty_and_untracked_ones_do_not(checkout):
    (checkout / "notes.txt").write_text("scratch\n")
    assert revision.source_revision()["dirty"] is False
    revision.source_revision.cache_clear()
    (checkout / "module.py").write_text("x = 2\n")
    found = revision.source_revision()
    assert found["dirty"] is True
    assert revision.describe(found).endswith(" with uncommitted changes")


def test_the_first_reading_is_kept(checkout):
    # A long run names the commit it started from, even if the checkout moves on.
    first = revision.source_revision()
    (checkout / "module.py").write_text("x = 3\n")
    assert revision.source_revision() == first


def test_no_checkout_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(revision, "SOURCE_ROOT", tmp_path)
    revision.source_revision.cache_clear()
    try:
        assert revision.source_revision() is None
        assert revision.describe(None) == "no git checkout (commit unknown)"
    finally:
        revision.source_revision.cache_clear()


def test_the_source_root_is_the_checkout_holding_the_package():
    """Since the layout moved this module into advbench/core/, SOURCE_ROOT was advbench/ (the
    package), which has no .git: every report said "no git checkout (commit unknown)" (the
    certified section's reports of 2026-12-06). It is the folder holding the package."""
    import advbench

    assert revision.SOURCE_ROOT == Path(advbench.__file__).resolve().parent.parent
    assert (revision.SOURCE_ROOT / "advbench" / "core" / "revision.py").is_file()
