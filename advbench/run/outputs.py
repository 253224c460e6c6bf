"""Run identity and output claims: the one run key and the one rule for an output that exists.

Every stage that writes an artifact names its run with ``run_key`` (a digest of everything
that determines the result) and takes its output path with ``claim_output``, which holds the
output lock (``files.output_lock``) and decides what to do with a file already there:

- none there, or ``overwrite``: a new run (``Claim.state == "new"``);
- the same run (same key), complete: reuse it (``"complete"``);
- the same run, interrupted: resume it (``"partial"``), unless ``resume`` is False;
- anything else: refused, one line naming the fix (``--overwrite`` or another ``-o``).

``Checkpoints`` is the one checkpoint-and-Ctrl-C tail of the resumable drivers (attacks,
certification): a partial artifact every few seconds and on Ctrl-C, so a rerun resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from advbench.core.errors import ArtifactError, OutputError
from advbench.core.files import output_lock, refuse_existing
from advbench.core.types import PathLike


def run_key(payload: dict[str, Any], indices: np.ndarray | None = None) -> str:
    """The run key: the sha256 hex digest of ``payload`` as JSON (sorted keys; numpy values,
    tuples and paths as JSON values, ``artifacts.jsonable`` with NaN kept), with, when
    ``indices`` is given, ``payload["indices"]`` = the sha256 of the sample indices' bytes
    (C order). Two runs with one key give one artifact, so an artifact holding the key can be
    reused or resumed.

    Args:
        payload: what determines the result (stage parameters, model hash, data, seed...);
            JSON-able values.
        indices: int (N,) indices of the samples into their split, or None.
    Returns: 64 lowercase hex digits.
    Raises: TypeError for a value JSON cannot hold.
    """
    from advbench.run.artifacts import jsonable

    payload = dict(payload)
    if indices is not None:
        payload["indices"] = hashlib.sha256(np.ascontiguousarray(indices).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(jsonable(payload, strict=False),
                                     sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass
class Claim:
    """An output held for one run (``claim_output``): ``state`` "new" (write it from scratch),
    "complete" (the same run is there: reuse ``attrs``) or "partial" (the same run,
    interrupted: resume from ``attrs`` and ``arrays``)."""

    path: Path
    state: str
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _found(attrs: dict[str, Any]) -> str:
    return (f"shard {attrs['shard_index']}/{attrs['shard_count']}" if "shard_count" in attrs
            else "the whole run")


def read_claim(path: PathLike, *, schema: str | None = None, key: str | None = None,
               noun: str = "a run", kind: str = "", overwrite: bool = False, resume: bool = True,
               shard: Any = None, num_samples: int | None = None,
               refusal: str | None = None) -> Claim:
    """What ``claim_output`` decides for ``path``, without the lock (a read-only check: a
    complete run is reused from a read-only folder too). Arguments as ``claim_output``."""
    path = Path(path)
    if overwrite or not path.exists():
        return Claim(path, "new")
    if schema is None or key is None:
        raise OutputError(f"{path} exists; {refusal or 'choose another -o or pass --overwrite'}")
    from advbench.run.artifacts import artifact_kind, read_arrays

    if artifact_kind(path) != schema:
        refuse_existing(path, overwrite=False, holds=f" and is not {kind}")
    attrs, _ = read_arrays(path, schema, names=[])
    if attrs.get("key") != key:
        raise ArtifactError(f"{path} holds {noun} with other parameters, model or samples; "
                            "pass --overwrite to replace it or choose another -o")
    if num_samples is not None and attrs.get("num_samples") != num_samples:
        raise ArtifactError(f"{path} holds {attrs.get('num_samples')} samples where this run "
                            f"has {num_samples}; pass --overwrite to start again")
    if attrs.get("complete", True):
        return Claim(path, "complete", attrs)
    wanted = f"shard {shard}" if shard is not None else "the whole run"
    if _found(attrs) != wanted:
        raise ArtifactError(f"{path} holds {_found(attrs)} of this run, not {wanted}; give "
                            "each shard its own -o (or merge the shards with `advbench merge`)")
    if not resume:
        raise ArtifactError(f"{path} holds an interrupted run; pass --resume to continue it or "
                            "--overwrite to start again")
    return Claim(path, "partial", attrs, read_arrays(path, schema)[1])


@contextlib.contextmanager
def claim_output(path: PathLike, *, what: str, schema: str | None = None,
                 key: str | None = None, noun: str = "a run", kind: str = "",
                 overwrite: bool = False, resume: bool = True, shard: Any = None,
                 num_samples: int | None = None, refusal: str | None = None,
                 lock: bool = True) -> Iterator[Claim]:
    """Hold the output ``path`` for one run and say what is there (``Claim``).

    Args:
        path: the output file.
        what: what it is, for messages ("attack artifact").
        schema, key: the artifact schema and run key (``run_key``) of the run; None for an
            output that is never reused (a model file): it is refused when it exists.
        noun: the run in messages ("a run", "an audit"); kind: the artifact with its article
            ("an attack artifact"), refused when the file is of another kind.
        overwrite: replace whatever is there (state "new").
        resume: continue an interrupted run of the same key (else ArtifactError).
        shard: the ``shards.Shard`` this run writes (None: the whole run); an interrupted
            artifact of another shard is refused.
        num_samples: the run's sample count, checked against the artifact's.
        refusal: the fix said when an output of no key exists ("pass --overwrite ...").
        lock: hold the output lock while the caller writes (False: a worker that does not
            write, e.g. a multi-worker trainer that is not the chief, checks alone).

    Raises:
        OutputError: the file exists and is not of this kind (or has no key), another
            process holds the lock, or the folder cannot be written.
        ArtifactError: the same kind of artifact of another run (key or sample count), an
            interrupted run of another shard, or an interrupted run with ``resume`` False.
    """
    with output_lock(path, what) if lock else contextlib.nullcontext():
        yield read_claim(path, schema=schema, key=key, noun=noun, kind=kind,
                         overwrite=overwrite, resume=resume, shard=shard,
                         num_samples=num_samples, refusal=refusal)


class Checkpoints:
    """The checkpoint tail of a resumable driver: ``tick()`` after each batch writes a
    partial artifact when ``seconds`` have passed since the last one; a KeyboardInterrupt
    inside the ``with`` block writes one, closes ``progress`` and is raised again (a rerun
    resumes); a normal exit closes ``progress`` and writes the final artifact (complete
    when ``complete()`` says so).

    ``write(complete)`` writes the artifact; ``complete()`` says whether every sample of the
    whole run is done."""

    def __init__(self, write: Callable[[bool], None], complete: Callable[[], bool], *,
                 seconds: float, progress: Any) -> None:
        self.write, self.complete, self.seconds, self.progress = write, complete, seconds, progress
        self.last = time.perf_counter()

    def tick(self) -> None:
        if time.perf_counter() - self.last > self.seconds:
            self.write(False)
            self.last = time.perf_counter()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is KeyboardInterrupt:
            self.write(False)
            self.progress.close()
            return
        if kind is None:
            self.progress.close()
            self.write(bool(self.complete()))
