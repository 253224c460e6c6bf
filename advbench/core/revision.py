"""Which advbench source made a result: the git commit of the checkout it runs from.

A report or artifact that names its commit can be traced to the exact code, which the package
version alone (``advbench.__version__``) cannot do between releases.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

#: The checkout holding the ``advbench`` package (an editable install runs from it).
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # advbench/core/revision.py -> the checkout


@functools.lru_cache(maxsize=None)
def source_revision() -> dict[str, Any] | None:
    """The git revision of the advbench source this process imported, read once and cached
    (so a long run reports the commit it started from, not one checked out later).

    Returns ``{"commit": 40 hex digits, "dirty": True when tracked files differ from that
    commit}``, or None when advbench does not run from a git checkout (an installed wheel)
    or git is missing or fails.
    """
    if not (SOURCE_ROOT / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def describe(revision: dict[str, Any] | None) -> str:
    """``commit 43df3a6c39ca`` (plus ``with uncommitted changes``), or a sentence saying the
    commit is unknown."""
    if revision is None:
        return "no git checkout (commit unknown)"
    text = f"commit {revision['commit'][:12]}"
    return text + (" with uncommitted changes" if revision["dirty"] else "")
