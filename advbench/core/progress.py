"""Progress on stderr (rich), shared by training, scoring and the attack driver.

Library code reports through a ``Progress`` object; ``Progress(quiet=True)`` does nothing, so
the library stays usable from Python without a terminal.

On a terminal a task is a rich bar (done / total, status, elapsed, ETA). Anywhere else (a CI
log, a file, a pipe) rich cannot redraw a bar, and its last frame came out cut to 80 columns
(``0:00:… ETA 0:00:…``) and repeated what the caller logs next; there a task prints one plain,
uncut line every ``interval`` seconds instead (``ADVBENCH_PROGRESS_SECONDS``, default 30) and
nothing when it ends: what a task found is the caller's ``log`` line.

Inside a batch: attacks run their loops in one ``tf.function``, so the driver's bar would not
move for the whole batch (C&W: 9,000 Adam steps). They announce their iteration budget from
Python (``iterations``) and report each step from inside the compiled loop (``step``, through
``advbench.core.ops.report_step``, a host callback compiled in only while a bar listens); the
current task then shows "iteration i/n" and the samples still running, and its fraction done
(and so its ETA) counts the batch's share.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from advbench.core.errors import ParameterError

#: Seconds between two plain lines where stderr is not a terminal (ADVBENCH_PROGRESS_SECONDS).
DEFAULT_INTERVAL = 30.0
# Inner steps arrive once per iteration (thousands per second on small models): the bar is
# redrawn at most this often.
REFRESH_SECONDS = 0.25

# TensorFlow runs the in-graph callback on its own threads: the listening task is a module
# global, not a context variable. The last started one (non-quiet, not closed) listens.
_lock = threading.Lock()
_listening: list["Progress"] = []


def listening() -> bool:
    """True while some non-quiet task is running: attacks compile their step callback in only
    then (``advbench.attacks.base.Attack.compiled``), so library calls pay nothing for it."""
    return bool(_listening)


def iterations(total: int, *, base: int = 0, label: str = "iteration", samples: int = 0,
               running: str = "samples running") -> None:
    """An attack announces, from Python, that the current batch of ``samples`` runs at most
    ``total`` iterations (its budget; early stops end sooner), and that the steps reported
    next count from ``base`` (e.g. search step s of C&W: base s * max_iter). ``label`` names
    the unit; ``running`` what the count ``step`` reports is ("samples running"; a minimal
    attack that runs every sample to the end counts the samples not fooled yet)."""
    with _lock:
        task = _listening[-1] if _listening else None
    if task is not None:
        task._inner_begin(int(total), int(base), label, int(samples), running)


def step(done: int, running: int = -1) -> None:
    """``done`` iterations of the current segment finished, ``running`` samples still attacked
    (-1: not known). Called from inside compiled loops; cheap when nothing needs redrawing."""
    with _lock:
        task = _listening[-1] if _listening else None
    if task is not None:
        task._inner_step(int(done), int(running))


def _interval_from_environment() -> float:
    """ADVBENCH_PROGRESS_SECONDS as seconds >= 0 (default 30); ParameterError otherwise."""
    text = os.environ.get("ADVBENCH_PROGRESS_SECONDS", "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ParameterError(f"ADVBENCH_PROGRESS_SECONDS must be a number of seconds >= 0, "
                             f"got {text!r}; unset it for the default ({DEFAULT_INTERVAL:g})")
    return value


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0) + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """One task at a time: done / total units (batches, epochs' steps), a free-text status
    (loss, success rate), samples/s, elapsed time and an estimate of the time left.

    Args:
        quiet: print nothing.
        console: where to write (default: stderr); a terminal gets a bar, anything else plain
            lines.
        interval: seconds between plain lines, >= 0 (default ``ADVBENCH_PROGRESS_SECONDS`` or
            30); 0 prints one on every update.
    """

    def __init__(self, *, quiet: bool = False, console: Console | None = None,
                 interval: float | None = None):
        self.quiet = quiet
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._console = console or Console(file=sys.stderr)
        self.plain = not self._console.is_terminal or self._console.is_dumb_terminal
        if interval is None:
            interval = _interval_from_environment()
        self.interval = max(float(interval), 0.0)
        self._description = ""
        self._unit = ""
        # (time, fraction) of the first report of the task: the ETA's pace is measured from it.
        self._reference: tuple[float, float] | None = None
        self._total = 0
        self._done = 0
        self._status = ""
        self._started = 0.0
        self._samples = 0
        self._last_line = 0.0
        self._last_draw = 0.0
        self._inner_reset()

    # -- the task ----------------------------------------------------------------------------
    def start(self, description: str, total: int, *, unit: str = "") -> None:
        """Begin a task of ``total`` units (replacing the previous one); ``unit`` names them
        in plain lines ("batches")."""
        self._started = self._last_line = time.perf_counter()
        self._samples = 0
        self._description, self._total, self._done, self._status = description, total, 0, ""
        self._unit = unit
        self._reference = None
        self._inner_reset()
        if self.quiet:
            return
        with _lock:
            if self in _listening:
                _listening.remove(self)
            _listening.append(self)
        if self.plain:
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
        """``steps`` units done (ending the inner steps of the unit under way), ``samples``
        more samples processed; ``status`` replaces the status text."""
        if not (steps or samples or status):
            return  # e.g. no batch resumed: nothing to show, no pace to start measuring
        self._samples += samples
        self._done += steps
        self._status = status
        if steps:
            self._inner_reset()
        self._show(force=True)

    def log(self, message: str) -> None:
        if not self.quiet:
            self._console.print(message, soft_wrap=True, highlight=False)

    def close(self) -> None:
        with _lock:
            if self in _listening:
                _listening.remove(self)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- inside one unit (module functions ``iterations`` and ``step``) ----------------------
    def _inner_reset(self) -> None:
        self._inner_total = 0
        self._inner_base = 0
        self._inner_done = 0
        self._inner_running = -1
        self._inner_label = "iteration"
        self._inner_samples = 0
        self._inner_running_label = "samples running"

    def _inner_begin(self, total: int, base: int, label: str, samples: int,
                     running: str = "samples running") -> None:
        self._inner_total, self._inner_base, self._inner_label = max(total, 0), base, label
        self._inner_done, self._inner_running, self._inner_samples = base, -1, samples
        self._inner_running_label = running

    def _inner_step(self, done: int, running: int) -> None:
        self._inner_done = min(self._inner_base + done, self._inner_total)
        self._inner_running = running
        self._show(force=False)

    def fraction(self) -> float:
        """Units done, counting the share of the unit under way, over the total, in [0, 1]."""
        if self._total <= 0:
            return 0.0
        inner = self._inner_done / self._inner_total if self._inner_total else 0.0
        return min((self._done + inner) / self._total, 1.0)

    def describe(self) -> str:
        """The status part of the line: inner steps, status text and samples/s."""
        parts = []
        if self._inner_total:
            inner = f"{self._inner_label} {self._inner_done:,}/{self._inner_total:,}"
            if self._inner_running >= 0:
                of = f"/{self._inner_samples:,}" if self._inner_samples else ""
                inner += f", {self._inner_running:,}{of} {self._inner_running_label}"
            parts.append(inner)
        if self._status:
            parts.append(self._status)
        if self._samples:
            rate = self._samples / max(time.perf_counter() - self._started, 1e-9)
            parts.append(f"{rate:,.1f} samples/s" if rate < 10 else f"{rate:,.0f} samples/s")
        return ", ".join(parts)

    def remaining(self) -> float | None:
        """Estimated seconds left, or None before a first measured interval: the pace from
        the first report (a step or a unit done, so that start-up and tracing do not count)
        to now, applied to the fraction left."""
        fraction, now = self.fraction(), time.perf_counter()
        if self._reference is None:
            self._reference = (now, fraction)
            return None
        since, at = self._reference
        if fraction <= at or now <= since:
            return None
        return (now - since) * (1 - fraction) / (fraction - at)

    def line(self) -> str:
        """The plain line: description, done/total, status, elapsed and, after the first
        measured interval, the estimated time left (``remaining``)."""
        elapsed = time.perf_counter() - self._started
        text = f"{self._description}: {self._done}/{self._total}"
        if self._unit:
            text += f" {self._unit}"
        described = self.describe()
        if described:
            text += f", {described}"
        text += f", elapsed {_duration(elapsed)}"
        left = self.remaining()
        if left is not None:
            text += f", ETA {_duration(left)}"
        return text

    def _show(self, *, force: bool) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if self._reference is None:
            self.remaining()  # the first report: the pace is measured from here
        if self.plain:
            if self._description and now - self._last_line >= self.interval:
                self._last_line = now
                self.log(self.line())
            return
        if self._bar is None or self._task is None or (
                not force and now - self._last_draw < REFRESH_SECONDS):
            return
        self._last_draw = now
        self._bar.update(self._task, completed=self.fraction() * self._total,
                         status=self.describe())
