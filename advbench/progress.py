"""Progress bars on stderr (rich), shared by training and the attack driver.

Library code reports through a ``Progress`` object; ``Progress(quiet=True)`` does nothing, so
the library stays usable from Python without a terminal.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class Progress:
    """A single progress bar with a free-text status (loss, accuracy, samples/s...)."""

    def __init__(self, *, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._console = console or Console(file=sys.stderr)
        self._started = 0.0
        self._samples = 0

    def start(self, description: str, total: int) -> None:
        self._started = time.perf_counter()
        self._samples = 0
        if self.quiet:
            return
        if self._bar is None:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self._console, transient=False,
            )
            self._bar.start()
        self._task = self._bar.add_task(description, total=total, status="")

    def advance(self, steps: int = 1, *, samples: int = 0, status: str = "") -> None:
        self._samples += samples
        if self.quiet or self._bar is None or self._task is None:
            return
        rate = self._samples / max(time.perf_counter() - self._started, 1e-9)
        text = f"{status}  {rate:,.0f} samples/s" if samples or self._samples else status
        self._bar.update(self._task, advance=steps, status=text)

    def log(self, message: str) -> None:
        if not self.quiet:
            self._console.print(message, soft_wrap=True, highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
