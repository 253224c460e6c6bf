"""Shards of one attack run: which batches a shard attacks, where a job array's index comes
from, and the merge of shard artifacts into the artifact one process would have written.

The runner gives every batch fixed boundaries and a seed that depends only on the run's seed
and where the batch starts (``data.batch_seed``), so shard ``I/N`` runs batches I, I+N,
I+2N, ... with the same key and seeds as the whole run, and its samples come out exactly as
the one-process run computes them; the merge copies each shard's completed samples.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from advbench.core.errors import ArtifactError, ParameterError
from advbench.run.artifacts import (ATTACK_SCHEMA, CERTIFICATION_SCHEMA, SCHEMA_FIELDS,
                                    artifact_kind, read_arrays, read_attack_artifact,
                                    write_arrays)
from advbench.run.outputs import claim_output

#: Environment variables that ``--shard auto/N`` reads, in this order, with the index their
#: first task has: SLURM job arrays (``--array=0-3``; the index is counted from
#: ``SLURM_ARRAY_TASK_MIN`` when set, so ``--array=1-4`` works too), Kubernetes Indexed Jobs
#: (``JOB_COMPLETION_INDEX``, 0-based) and CI matrices in GitLab's ``parallel:`` style
#: (``CI_NODE_INDEX``, 1-based: 1..N, converted to 0..N-1).
SHARD_INDEX_VARIABLES: dict[str, int] = {
    "SLURM_ARRAY_TASK_ID": 0,
    "JOB_COMPLETION_INDEX": 0,
    "CI_NODE_INDEX": 1,
}
# Attrs a shard artifact carries and a merged one drops.
SHARD_ATTRS = ("shard_index", "shard_count", "device")
# Attrs that may differ between the shards of one run: where and when each ran, how far it
# got, and the model's path on its machine (its hash is in the run key). Every other attr
# must be equal in every shard.
PER_SHARD_ATTRS = (*SHARD_ATTRS, "complete", "wall_time_s", "created", "advbench_version",
                   "model_path")
# Per-sample arrays every shard holds for the whole run (from the data) and must agree on
# everywhere, and those each shard computes for its own samples (-1 elsewhere) and must agree
# on wherever two shards computed them.
SHARED_ARRAYS = {"y": "labels", "indices": "sample indices"}
COMPUTED_ARRAYS = {"pred_clean": "clean predictions", "target": "targets"}
#: The most shards a run can be split into: above any job array's size (SLURM's MaxArraySize
#: is at most 4,000,001; a Kubernetes Indexed Job has at most 100,000 completions) and far
#: above the one shard per batch that still helps, while an index stays an int64 in HDF5.
MAX_SHARDS = 10_000_000


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``: batches index, index + count, ..."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ParameterError(f"shard index must be in 0..{self.count - 1} for {self.count} "
                                 f"shards, got {self.index}/{self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def batches(self, starts: Sequence[int]) -> list[int]:
        """This shard's batch starts among all of the run's batch ``starts``."""
        return list(starts[self.index::self.count])


def parse_shard(text: str, environ: Mapping[str, str] | None = None, *,
                flag: str = "--shard") -> Shard:
    """``"I/N"`` (0 <= I < N) or ``"auto/N"`` (I from ``SHARD_INDEX_VARIABLES``) as a Shard.

    Raises ParameterError for any other text, for ``auto`` when none of the variables is set
    or holds an integer, for an index outside 0..N-1 and for N above ``MAX_SHARDS``; the
    messages name the option ``flag``.

    Example:
        >>> parse_shard("auto/4", {"CI_NODE_INDEX": "1"})
        Shard(index=0, count=4)
    """
    environ = os.environ if environ is None else environ
    shown = repr(text if len(text) <= 40 else f"{text[:40]}...")
    match = re.fullmatch(r"\s*(auto|\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ParameterError(f"{flag} must be I/N (0 <= I < N, e.g. 0/4) or auto/N, "
                             f"got {shown}")
    # Digits past the bound are not converted (int() refuses over 4300 digits).
    count = int(match.group(2)) if len(match.group(2)) <= 30 else MAX_SHARDS + 1
    if count < 1:
        raise ParameterError(f"{flag} needs at least one shard (N >= 1), got {shown}")
    if count > MAX_SHARDS:
        raise ParameterError(f"{flag} allows at most {MAX_SHARDS} shards (N), got {shown}; "
                             "one shard per batch is the most that helps")
    if match.group(1) != "auto":
        index = int(match.group(1)) if len(match.group(1)) <= 30 else count
        if index >= count:
            raise ParameterError(f"{flag} index I must be in 0..{count - 1} for {count} shards, "
                                 f"got {shown}")
        return Shard(index, count)
    for name, first in SHARD_INDEX_VARIABLES.items():
        value = environ.get(name)
        if value is None or value == "":
            continue
        if name == "SLURM_ARRAY_TASK_ID" and environ.get("SLURM_ARRAY_TASK_MIN"):
            first = _integer(environ, "SLURM_ARRAY_TASK_MIN")
        index = _integer(environ, name) - first
        if not 0 <= index < count:
            raise ParameterError(f"{name}={value} gives shard index {index}, outside 0..{count - 1}"
                                 f"; launch {count} tasks or change N in {flag} auto/{count}")
        return Shard(index, count)
    raise ParameterError(f"{flag} auto/{count} reads {', '.join(SHARD_INDEX_VARIABLES)}, and "
                         f"none is set; give the index yourself: {flag} I/N")


def _integer(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ParameterError(f"{name} must be an integer, got {environ[name]!r}") from None


def shard_output(path: str | os.PathLike, shard: Shard) -> Path:
    """The default artifact path of a shard: ``<stem>-shard<I>of<N>.h5`` beside ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-shard{shard.index}of{shard.count}{path.suffix}")


# -- merging ---------------------------------------------------------------------------------
def merge_attack_runs(paths: Sequence[str | os.PathLike], schema: str = ATTACK_SCHEMA
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of the attack run the artifacts at ``paths`` hold together, in memory.

    The artifacts must share one run key (``runner.run_key``), agree on every attr of the
    run and on the per-sample arrays that do not depend on who attacked (labels, indices;
    clean predictions and targets where both computed them), and hold disjoint samples
    (their ``completed`` masks). Each array takes every sample from the artifact that
    completed it, so with all shards merged the arrays equal, bit for bit, those of a
    one-process run; samples no artifact completed keep the runner's fresh values, as an
    interrupted run has them (``schema``: certification shards, ``advbench.score.certify``, merge
    the same way). attrs: the first artifact's, without the shard attrs, with
    ``complete`` (all samples done), the summed ``wall_time_s``, and ``shard_devices`` (each
    artifact's ``device``).

    Raises ArtifactError for a path that is not an attack artifact, shards of different runs
    (keys differ), a shard that differs from the first (another number of samples, an attr,
    an array above; the message names it) and overlapping shards; ParameterError for no
    paths.
    """
    if not paths:
        raise ParameterError("give at least one attack artifact to merge")
    loaded = []
    for path in paths:
        attrs, arrays = read_arrays(path, schema)
        if "key" not in attrs or "completed" not in arrays:
            raise ArtifactError(f"{path} lacks its run key or completed mask; it is not written "
                                "by `advbench attack`: run the attack again")
        _check_known_arrays(Path(path), schema, arrays)
        loaded.append((Path(path), attrs, arrays))
    _check_same_extras(loaded)
    first_path, first_attrs, first_arrays = loaded[0]
    owner = np.full(len(first_arrays["completed"]), -1)
    for k, (path, attrs, arrays) in enumerate(loaded):
        if attrs["key"] != first_attrs["key"]:
            raise ArtifactError(f"{path} is a run of other parameters, model or samples than "
                                f"{first_path} (run keys differ); merge shards of one run only")
        _check_agrees(path, attrs, arrays, first_path, first_attrs, first_arrays)
        completed = arrays["completed"]
        both = completed & (owner >= 0)
        if both.any():
            other = loaded[int(owner[both][0])][0]
            raise ArtifactError(f"{path} and {other} both hold {int(both.sum())} samples; "
                                "merge each shard once")
        owner[completed] = k
    merged: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(n for _, _, arrays in loaded for n in arrays):
        like = next(arrays[name] for _, _, arrays in loaded if name in arrays)
        # Arrays a shard lacks (an extra its batches never produced) start as the runner's.
        out = np.array(first_arrays[name]) if name in first_arrays else np.zeros_like(like)
        for k, (_, _, arrays) in enumerate(loaded[1:], start=1):
            if name in arrays and name not in ("y", "indices"):
                out[owner == k] = arrays[name][owner == k]
        merged[name] = out
    merged["completed"] = owner >= 0
    attrs = {key: value for key, value in first_attrs.items() if key not in SHARD_ATTRS}
    attrs["complete"] = bool(merged["completed"].all())
    attrs["wall_time_s"] = round(sum(float(a.get("wall_time_s", 0.0)) for _, a, _ in loaded), 3)
    attrs["shard_devices"] = [str(a.get("device", "")) for _, a, _ in loaded]
    return attrs, merged


def _check_known_arrays(path: Path, schema: str, arrays: dict[str, np.ndarray]) -> None:
    """ArtifactError for an array the stage never writes (``SCHEMA_FIELDS``; an attack's
    ``extras/NAME`` too): a merge writes every array it reads, so an edited shard's would be
    carried into the merged artifact."""
    for name in sorted(arrays):
        if name not in SCHEMA_FIELDS[schema] and not (
                schema == ATTACK_SCHEMA and re.fullmatch(r"extras/[A-Za-z_]\w*", name)):
            raise ArtifactError(f"{path} holds an array {name} that advbench does not write in "
                                f"{schema} artifacts; merge only the shards advbench wrote "
                                "(was one edited?)")


def _check_same_extras(loaded: list[tuple[Path, dict[str, Any], dict[str, np.ndarray]]]
                       ) -> None:
    """ArtifactError when a shard that attacked samples lacks an attack extra another shard
    holds (the attack writes its extras with every batch; a shard that attacked nothing may
    lack them)."""
    extras = {name: path for path, _, arrays in reversed(loaded) for name in arrays
              if name.startswith("extras/")}
    for path, _, arrays in loaded:
        missing = sorted(set(extras) - set(arrays)) if arrays["completed"].any() else []
        if missing:
            raise ArtifactError(f"{path} lacks {missing[0]}, which {extras[missing[0]]} holds, "
                                "though both attacked samples; merge shards of one run only "
                                "(was one edited?)")


def _check_agrees(path: Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray],
                  first_path: Path, first_attrs: dict[str, Any],
                  first_arrays: dict[str, np.ndarray]) -> None:
    """ArtifactError unless the shard at ``path`` agrees with the first one: its number of
    samples, every attr of the run (all but PER_SHARD_ATTRS), SHARED_ARRAYS everywhere and
    COMPUTED_ARRAYS wherever both computed them. A shard of one run with the same key can
    differ only if a file was edited."""
    fix = "merge shards of one run only (was one edited?)"
    n, first_n = len(arrays["completed"]), len(first_arrays["completed"])
    if n != first_n:
        raise ArtifactError(f"{path} holds {n} samples where {first_path} holds {first_n}; "
                            f"{fix}")
    for name in sorted(set(attrs) | set(first_attrs)):
        if name not in PER_SHARD_ATTRS and attrs.get(name) != first_attrs.get(name):
            raise ArtifactError(f"{path} differs from {first_path} in attribute {name}; {fix}")
    for name, what in {**SHARED_ARRAYS, **COMPUTED_ARRAYS}.items():
        if (name in arrays) != (name in first_arrays):
            raise ArtifactError(f"{path} differs from {first_path} in {name} ({what}): one of "
                                f"them lacks it; {fix}")
        if name not in arrays:
            continue
        ours, theirs = arrays[name], first_arrays[name]
        if ours.shape != theirs.shape:
            raise ArtifactError(f"{path} differs from {first_path} in {name} ({what}): shape "
                                f"{ours.shape}, not {theirs.shape}; {fix}")
        differ = ours != theirs
        if name in COMPUTED_ARRAYS:
            differ &= (ours != -1) & (theirs != -1)
        if differ.any():
            raise ArtifactError(f"{path} differs from {first_path} in {name} ({what}) at "
                                f"{int(np.count_nonzero(differ))} samples; {fix}")


def check_checkpoint(path: Path, arrays: dict[str, np.ndarray],
                     fresh: dict[str, Any]) -> None:
    """ArtifactError unless an interrupted run's arrays at ``path`` can be resumed by the run
    whose fresh state is ``fresh`` (the runner's arrays before any batch): it holds every
    array the runner writes, and the labels and sample indices of this run (the run key
    names the samples; these arrays are what the finished artifact would hold)."""
    fix = "the file is damaged or edited: pass --overwrite to start the run again"
    missing = [name for name, value in fresh.items()
               if isinstance(value, np.ndarray) and name not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks {', '.join(missing)}; {fix}")
    for name, what in SHARED_ARRAYS.items():
        if name not in fresh:  # a stage that sets them from its own samples afterwards
            continue
        differ = int(np.count_nonzero(arrays[name] != fresh[name]))
        if differ:
            raise ArtifactError(f"{path} differs from this run in {name} ({what}) at {differ} "
                                f"samples; {fix}")


def merge_shards(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                 overwrite: bool = False) -> tuple[Path, dict[str, Any]]:
    """Write the merge of shard artifacts (``merge_attack_runs``) to ``output``, atomically:
    a complete attack artifact, or an interrupted one that rerunning the plain ``advbench
    attack`` command with ``-o output`` finishes. Returns (output, attrs).

    Holds the output lock while it merges (``files.output_lock``). Raises ArtifactError when
    ``output`` is one of ``paths`` and as ``merge_attack_runs``; OutputError when ``output``
    exists (unless ``overwrite``), another run writes it, or the disk refuses.
    """
    output = Path(output)
    if any(Path(p).resolve() == output.resolve() for p in paths):
        raise ArtifactError(f"{output} is one of the shards; write the merge to another -o")
    with claim_output(output, what="attack artifact", overwrite=overwrite):
        return output, write_merge(paths, output)


def write_merge(paths: Sequence[str | os.PathLike], output: str | os.PathLike) -> dict[str, Any]:
    """Write the merge of ``paths`` to ``output`` (the caller holds its claim,
    ``outputs.claim_output``); returns the merged attrs."""
    # Certification shards merge as attack shards do (the first path's kind decides).
    schema = (CERTIFICATION_SCHEMA if paths and Path(paths[0]).exists()
              and artifact_kind(paths[0]) == CERTIFICATION_SCHEMA else ATTACK_SCHEMA)
    attrs, arrays = merge_attack_runs(paths, schema)
    write_arrays(output, schema, attrs, arrays)
    return attrs


def group_shards(paths: Sequence[str | os.PathLike]) -> list[list[Path]]:
    """``paths`` with the shard artifacts of one run (same key) gathered into one group, at
    the place of the first; every other path is a group of its own."""
    groups: list[list[Path]] = []
    by_key: dict[str, list[Path]] = {}
    for path in paths:
        path = Path(path)
        key = _shard_key(path)
        if key is None:
            groups.append([path])
        elif key in by_key:
            by_key[key].append(path)
        else:
            by_key[key] = [path]
            groups.append(by_key[key])
    return groups


def _shard_key(path: Path) -> str | None:
    """The run key of a shard artifact (attack or certification), None for anything else."""
    kind = artifact_kind(path) if path.exists() else None
    if kind not in (ATTACK_SCHEMA, CERTIFICATION_SCHEMA):
        return None
    attrs, _ = read_arrays(path, kind, names=[])
    return attrs.get("key") if "shard_count" in attrs else None


def find_shards(directory: str | os.PathLike, key: str) -> list[Path] | None:
    """Shard artifacts in ``directory`` of the run ``key`` that hold all its samples together
    (one per shard index of one shard count), or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found: dict[tuple[int, int], Path] = {}
    for path in sorted(directory.glob("*.h5")):
        if _shard_key(path) != key:
            continue
        attrs, _ = read_arrays(path, ATTACK_SCHEMA, names=[])
        found.setdefault((int(attrs["shard_count"]), int(attrs["shard_index"])), path)
    for count in sorted({c for c, _ in found}):
        paths = [found.get((count, i)) for i in range(count)]
        if all(paths):
            chosen = [p for p in paths if p is not None]
            _, arrays = merge_attack_runs(chosen)
            if arrays["completed"].all():
                return chosen
    return None


def read_attack_run(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[
        dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of a complete attack run: one artifact (``read_attack_artifact``) or
    the shards of one run, merged in memory (``merge_attack_runs``). ArtifactError when the
    run is incomplete."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if len(paths) == 1:
        return read_attack_artifact(paths[0])
    attrs, arrays = merge_attack_runs(paths)
    if not attrs["complete"]:
        done = int(np.count_nonzero(arrays["completed"]))
        raise ArtifactError(f"{', '.join(map(str, paths))} hold {done} of "
                            f"{len(arrays['completed'])} samples of their run; give every shard "
                            "or run the missing ones (advbench attack ... --shard I/N)")
    return attrs, arrays
