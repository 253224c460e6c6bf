"""Markdown cells and tables of the reproduction report (report.py, authors.py, strong.py)."""

from __future__ import annotations

from typing import Any


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction in [0, 1] as a percentage with ``digits`` decimals; "n/a" for None or NaN."""
    return "n/a" if value is None or value != value else f"{100 * value:.{digits}f}"


def number(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; "n/a" for None or NaN."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table: the header row, the separator, one line per row (cells as str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
