"""Markdown cells and tables of the reproduction report (report.py, authors.py, strong.py),
and the finishing of its accuracy figures (report.py, certified.py)."""

from __future__ import annotations

from pathlib import Path
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


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: the report's figures are files, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish_accuracy_figure(fig: Any, ax: Any, path: Path, *, xlabel: str, title: str,
                           dpi: int = 110) -> Path:
    """Label a one-panel accuracy plot (y: "accuracy (%)", 0 to 100, light grid, legend),
    save it as ``path`` (``score.report.save_figure``, atomic) and close it; returns path."""
    from advbench.score.report import save_figure

    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=dpi)
    finally:
        pyplot().close(fig)
    return path
