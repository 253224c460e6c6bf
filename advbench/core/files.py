"""Writing outputs: the one atomic writer, the early writability check and the output lock.

Every file advbench writes (artifacts, CSV, plots, data files, reports) goes through
``atomic_write``: the content goes to a temporary file in the same folder, is fsynced and
renamed over the final path, so a full disk, a read-only folder or Ctrl-C leaves the previous
file intact and nothing half-written at the final path. OS errors become one ``OutputError``
line saying what, where, and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from advbench.core.errors import OutputError

# How long a second writer of the same output waits for the first before refusing.
LOCK_WAIT_S = 5.0


#: The option that names each kind of output (``what``), for the fix of an error; -o else.
OUTPUT_FLAGS = {"CSV": "--csv", "plot": "--plot"}


def _another(what: str) -> str:
    return f"choose another output path ({OUTPUT_FLAGS.get(what, '-o')})"


def _fix(error: OSError, what: str = "output") -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"free space on that disk or {_another(what)}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"the folder is read-only for you: {_another(what)}"
    return _another(what)


def output_error(what: str, path: str | os.PathLike, error: OSError) -> OutputError:
    """One line for an OS error while writing ``what`` at ``path``."""
    reason = error.strerror or str(error) or error.__class__.__name__
    return OutputError(f"cannot write {what} {path}: {reason}; {_fix(error, what)}")


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail fast, before hours of work, unless a file can be created at ``path``: its folder
    is created if missing, must be a folder and writable (tried by creating a temporary file
    there, which also catches read-only file systems and root's bypass of permissions).
    ``path`` itself must not be a folder. Returns ``path``; OutputError otherwise."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a folder; give a file path")
    _writable_folder(path.parent, path, what)
    return path


def ensure_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (and its parents) and check that files can be written in it, as
    ``check_writable`` does for a file. Returns ``folder``; OutputError otherwise."""
    folder = Path(folder)
    _writable_folder(folder, folder, what)
    return folder


def _writable_folder(folder: Path, shown: Path, what: str) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"cannot write {what} {shown}: {parent} is a file, not a "
                                  f"folder; {_another(what)}")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".advbench-", suffix=".check"):
            pass
    except OSError as e:
        raise output_error(what, shown, e) from None


def _new_file_mode() -> int:
    """0o666 less the process umask, as ``open(path, "w")`` would create the file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(fd: int) -> None:
    """fsync a file (the low-level flush that reports a full disk on delayed allocation)."""
    os.fsync(fd)


def refuse_existing(path: str | os.PathLike, *, overwrite: bool, holds: str = "") -> None:
    """The one rule for an output that exists and is not reused or resumed: refused unless
    ``overwrite``. ``holds`` says what is there (" and is not an audit record"). Raises
    OutputError "PATH exists[holds]; choose another -o or pass --overwrite"."""
    if not overwrite and Path(path).exists():
        raise OutputError(f"{path} exists{holds}; choose another -o or pass --overwrite")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, what: str = "output",
                 suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``.NAME.XXXX`` + ``suffix``: a writer that
    insists on a file extension gets it) to write ``what`` to; on success fsync it and
    rename it over ``path``. On any error (or Ctrl-C) the temporary file is deleted and
    ``path`` is left as it was; OS errors become one OutputError line."""
    path = Path(path)
    check_writable(path, what)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    tmp = Path(name)
    try:  # mkstemp makes the file private (0600): give it the mode a plain open would
        os.fchmod(fd, _new_file_mode())
    finally:
        os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            _fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise output_error(what, path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``); returns ``path``."""
    with atomic_write(path, what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, what: str = "output") -> Path:
    """Write ``text`` as UTF-8; a path's bytes that are not UTF-8 (Python's surrogate
    escapes, as in ``sys.argv``) are written back as they were."""
    return write_bytes(path, text.encode("utf-8", "surrogateescape"), what)


def _lock_paths(path: Path) -> tuple[Path, Path]:
    return (path.with_name(f".{path.name}.lock"), path.with_name(f".{path.name}.lock-owner"))


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str = "output",
                wait_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the output ``path`` (a ``.NAME.lock`` file beside it, via
    the filelock library) for the whole run, so that two runs never write the same output.
    The lock file stays after release: deleting it would let two runs lock different inodes
    of the same path (tox-dev/filelock#574).
    A second writer waits ``wait_s`` (default LOCK_WAIT_S) seconds, then raises OutputError
    naming the run that holds it."""
    import filelock

    path = Path(path)
    check_writable(path, what)
    lock_path, owner_path = _lock_paths(path)
    lock = filelock.FileLock(str(lock_path), timeout=LOCK_WAIT_S if wait_s is None else wait_s)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            owner = owner_path.read_text().strip() or "another advbench run"
        except OSError:
            owner = "another advbench run"
        raise OutputError(f"{path} is being written by {owner}; wait for it to finish or "
                          "choose another output path (-o)") from None
    except OSError as e:
        raise output_error(f"the lock of {what}", lock_path, e) from None
    try:
        with contextlib.suppress(OSError, OutputError):
            write_text(owner_path, f"process {os.getpid()} ({' '.join(sys.argv)[:200]})",
                       "lock owner")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner_path.unlink()
        lock.release()
