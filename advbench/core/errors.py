"""The project's error types.

Library code raises these (never ``assert``) for bad user input; the CLI turns them into a
one-line message and exit code 1.
"""

from __future__ import annotations


class AdvbenchError(ValueError):
    """Bad input: the message says what was passed, what was expected, and how to fix it."""


class DataError(AdvbenchError):
    """A data set file is missing, corrupt or of the wrong shape."""


class ArtifactError(AdvbenchError):
    """An HDF5 artifact is missing, corrupt, not ours, or does not match its use."""


class ParameterError(AdvbenchError):
    """A hyperparameter is out of range or conflicts with another one."""


class OptionError(ParameterError):
    """Options that do not go together or do not apply, or a value refused before any work
    starts: the command line's usage error (exit 2; other errors exit 1). The stages raise it
    for their callers' options (``advbench.stages``), so that one call can check them, load
    the model and check what depends on it, each error keeping its kind. ``flag``: the one
    option whose value is bad, when the message is about that value alone."""

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag


class OutputError(AdvbenchError):
    """An output cannot be written (disk full, read-only folder, a file where a folder must
    be) or is held by another run."""


def flags_verb(flags: "list[str] | tuple[str, ...]", singular: str, plural: str) -> str:
    """``flags`` joined by commas, then the verb agreeing with their number: "--x does",
    "--x, --y do" (the refusals of options that do not apply)."""
    return f"{', '.join(flags)} {singular if len(flags) == 1 else plural}"
