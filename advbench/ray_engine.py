"""``advbench attack --engine ray --workers N``: one Ray task per shard, then the merge.

Ray is an optional extra (``pip install advbench[ray]``), imported only here. Each task runs
``runner.attack_split`` on one shard (``shards.Shard``), loading the model and data itself
from shared storage, and writes the shard artifact beside the output; Ray retries a task
whose worker died, and the retry resumes the shard from its last checkpoint. The merged
artifact equals a one-process run (``shards.merge_attack_runs``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

from advbench.artifacts import (ATTACK_SCHEMA, artifact_kind, load_model, read_arrays,
                                read_model_metadata)
from advbench.attacks import make_attack
from advbench.attacks.base import Attack
from advbench.errors import ArtifactError, ParameterError
from advbench.progress import Progress
from advbench.runner import AttackRun, attack_split, run_key
from advbench.shards import Shard, merge_shards, shard_output
from advbench.types import PathLike


def attack_shard(run: AttackRun, attack_name: str, attack_params: dict[str, Any],
                 output: str, shard_index: int, shard_count: int) -> str:
    """Attack one shard in this process (what a Ray task runs); returns the shard's path."""
    model, meta = load_model(run.model_path)
    attack = make_attack(attack_name, **attack_params)
    return str(attack_split(run, attack, model, meta, output,
                            shard=Shard(shard_index, shard_count)))


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ParameterError("--engine ray needs Ray: pip install 'advbench[ray]'") from None
    return ray


def attack_with_ray(run: AttackRun, attack: Attack, output: PathLike, *, workers: int,
                    retries: int = 3, overwrite: bool = False,
                    progress: Progress | None = None,
                    shard_task: Callable[..., str] = attack_shard) -> Path:
    """Attack ``run`` as ``workers`` shards, one Ray task each, and merge them into ``output``.

    Connects to the cluster of ``RAY_ADDRESS`` when set, else starts a local Ray with
    ``workers`` CPUs. A task takes one GPU when the cluster has GPUs. A task whose worker
    dies is retried up to ``retries`` times (resuming its shard). Shard artifacts are
    ``<output stem>-shard<I>of<N>.h5``; the merged artifact is bit-identical to a one-process
    run. ``shard_task`` is the function a task runs (default ``attack_shard``).

    An existing complete ``output`` of the same run is returned as it is.

    Raises ParameterError without Ray or for workers < 1; ArtifactError for an existing
    ``output`` of another run (unless ``overwrite``) and as ``merge_shards``.
    """
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    progress = progress or Progress(quiet=True)
    output = Path(output)
    if output.exists() and not overwrite:
        _, _, indices = run.load()
        key = run_key(run, attack, read_model_metadata(run.model_path).get("content_hash", ""),
                      indices)
        attrs = read_arrays(output, ATTACK_SCHEMA, names=[])[0] \
            if artifact_kind(output) == ATTACK_SCHEMA else {}
        if attrs.get("key") == key and attrs.get("complete"):
            progress.log(f"{output} is complete already; nothing to do")
            return output
        raise ArtifactError(f"{output} exists and holds another or an unfinished run; pass "
                            "--overwrite to replace it or choose another -o")
    ray = _ray()
    if not ray.is_initialized():
        # A local Ray gets one CPU per shard; a cluster (RAY_ADDRESS) keeps its own.
        ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else workers,
                 include_dashboard=False, log_to_driver=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=retries)(shard_task)
    shards = [Shard(i, workers) for i in range(workers)]
    run_fields = dataclasses.asdict(run)
    pending = [task.remote(AttackRun(**run_fields), attack.name, attack.params(),
                           str(shard_output(output, shard)), shard.index, shard.count)
               for shard in shards]
    progress.log(f"{attack.name}: {workers} Ray tasks")
    paths = ray.get(pending)
    path, _ = merge_shards(paths, output, overwrite=True)
    return path
