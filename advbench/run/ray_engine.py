"""``advbench attack --engine ray --workers N``: one Ray task per shard, then the merge; and
``advbench reproduce --engine ray``: one Ray task per stage of the plan, then the report.

Ray is an optional extra (``pip install advbench[ray]``), imported only here. Each task runs
``runner.attack_split`` on one shard (``shards.Shard``), opening the model (as the caller
read it: ``loading.ModelSource``) and the data itself from shared storage, and writes the shard artifact beside the output; Ray retries a task
whose worker died, and the retry resumes the shard from its last checkpoint. The merged
artifact equals a one-process run (``shards.merge_attack_runs``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable

from advbench.attacks import make_attack
from advbench.attacks.base import Attack
from advbench.core.errors import AdvbenchError, ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import PathLike
from advbench.run.artifacts import ATTACK_SCHEMA
from advbench.run.loading import LoadedModel, ModelSource
from advbench.run.outputs import claim_output
from advbench.run.runner import AttackRun, attack_split, run_key, run_parameters
from advbench.run.shards import Shard, shard_output, write_merge


def attack_shard(model: ModelSource, run: AttackRun, attack_name: str,
                 attack_params: dict[str, Any], output: str, shard_index: int,
                 shard_count: int) -> str:
    """Attack one shard in this process (what a Ray task runs); returns the shard's path.
    ``model`` is opened here as the caller read it (``loading.ModelSource``: a user's .keras
    file with its reading flags as well as an advbench artifact)."""
    loaded = model.open()
    attack = make_attack(attack_name, **attack_params)
    return str(attack_split(run, attack, loaded.model, loaded.meta, output,
                            shard=Shard(shard_index, shard_count)))


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ParameterError("--engine ray needs Ray: pip install 'advbench[ray]'") from None
    return ray


def _init_ray(num_cpus: int | None) -> Any:
    """Ray, connected to the cluster of ``RAY_ADDRESS`` when set, else to a local Ray with
    ``num_cpus`` CPUs (None: all of them); a cluster keeps its own resources."""
    ray = _ray()
    if not ray.is_initialized():
        # Ray's own INFO and WARNING lines ("Started a local Ray instance", token
        # authentication) would break the one-line errors of a failed run.
        ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else num_cpus,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return ray


def _task_gpus(ray: Any) -> int:
    """One GPU per task when the cluster has GPUs, else none."""
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def attack_with_ray(run: AttackRun, attack: Attack, output: PathLike, *,
                    model: LoadedModel, workers: int, retries: int = 3,
                    overwrite: bool = False, progress: Progress | None = None,
                    shard_task: Callable[..., str] = attack_shard) -> Path:
    """Attack ``run`` as ``workers`` shards, one Ray task each, and merge them into ``output``.

    ``model``: the model as the caller opened it (``loading.open_model``); each task reopens
    it from its ``source`` (path and reading flags), so the paths must be readable from every
    node (shared storage). Connects to the cluster of ``RAY_ADDRESS`` when set, else starts a
    local Ray with ``workers`` CPUs. A task takes one GPU when the cluster has GPUs. A task
    whose worker dies is retried up to ``retries`` times (resuming its shard). Shard
    artifacts are ``<output stem>-shard<I>of<N>.h5``; the merged artifact is bit-identical to
    a one-process run. ``shard_task`` is the function a task runs (default ``attack_shard``,
    called as ``shard_task(model.source, run, attack name, attack params, shard output,
    shard index, shard count)``).

    An existing complete ``output`` of the same run is returned as it is; the output is held
    (``outputs.claim_output``) from the start to the merge.

    Raises ParameterError without Ray or for workers < 1; ArtifactError for an existing
    ``output`` of another run or an interrupted one (unless ``overwrite``) and as
    ``merge_shards``; OutputError while another run writes ``output``.
    """
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    progress = progress or Progress(quiet=True)
    output = Path(output)
    key = run_key(run, attack, model.meta.get("content_hash", ""), run.load()[2]) \
        if output.exists() and not overwrite else None
    with claim_output(output, what="attack artifact", schema=ATTACK_SCHEMA, key=key,
                      noun="a run", kind="an attack artifact", overwrite=overwrite) as claim:
        if complete_for_ray(claim.state, output, "an interrupted run", progress):
            return output
        shards = [Shard(i, workers) for i in range(workers)]
        progress.log(run_parameters(run, attack))
        progress.log(f"{attack.name}: {workers} Ray tasks")
        paths = shards_with_ray(shard_task, [
            (model.source, absolute_data_dir(run), attack.name, attack.params(),
             str(shard_output(output.resolve(), shard)), shard.index, shard.count)
            for shard in shards], retries=retries)
        write_merge(paths, output)
    return output


def complete_for_ray(state: str, output: Path, interrupted: str, progress: Progress) -> bool:
    """The Ray engine's rule on a claimed output (``outputs.claim_output``'s ``state``):
    True (and said) when it is complete already; a partial one is refused, since Ray's
    shards start from nothing (ArtifactError naming ``interrupted``, "an interrupted run")."""
    if state == "complete":
        progress.log(f"{output} is complete already; nothing to do")
        return True
    if state == "partial":
        raise ArtifactError(f"{output} holds {interrupted}; finish it without --engine ray or "
                            "pass --overwrite to start again")
    return False


def absolute_data_dir(run: Any) -> Any:
    """A copy of a run (a dataclass with ``data_dir``) whose data folder is absolute: a Ray
    worker's working folder is not ours."""
    return dataclasses.replace(run, data_dir=run.data_dir and str(Path(run.data_dir).resolve()))


def shards_with_ray(shard_task: Callable[..., str], arguments: list[tuple], *,
                    retries: int = 3) -> list[str]:
    """Run ``shard_task(*args)`` for each tuple of ``arguments`` as one Ray task (one CPU, and
    one GPU when the cluster has them; a local Ray gets one CPU per task), retried up to
    ``retries`` times when its worker dies; returns what the tasks returned (the shards'
    paths), in order. A task's own advbench error is raised as it is (``_results``)."""
    ray = _init_ray(len(arguments))
    task = ray.remote(num_cpus=1, num_gpus=_task_gpus(ray), max_retries=retries)(shard_task)
    return _results(ray, [task.remote(*args) for args in arguments])


def _results(ray: Any, refs: list) -> list:
    """``ray.get(refs)``, with a task's own advbench error (a full disk, a damaged file) raised
    as it is: one line, not Ray's wrapper holding the worker's traceback."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, AdvbenchError):
            raise e.cause from None
        raise


def run_stages_with_ray(settings: dict[str, Any], nodes: list[dict[str, Any]], *,
                        stage_task: Callable[..., str], workers: int | None = None,
                        retries: int = 3, progress: Progress | None = None) -> list[str]:
    """Run every node of ``nodes`` (dicts with "id" and "needs", the ids it depends on, all
    among ``nodes``: e.g. ``paper.plan.plan`` without its report) as Ray tasks, one per node,
    each given its dependencies' ObjectRefs so that Ray starts it only after them. A task calls
    ``stage_task(settings, node_id, *ids its needs returned)``. Returns the ids run, in order.

    The stage runs inside the task's worker (``stage_task``; the paper passes
    ``paper.plan.run_stage``), not in a subprocess: a worker that dies takes the stage's work
    with it, so the retry (up to ``retries``) never races an orphan writing the same files, and
    resumes from what is on disk. Connects to ``RAY_ADDRESS`` when set, else starts a local Ray with ``workers`` CPUs
    (None: all); a task takes one CPU, and one GPU when the cluster has GPUs. Paths in
    ``settings`` must be readable from every node (shared storage).

    Raises ParameterError without Ray or for workers < 1; a stage's own advbench error as it
    is (the first failed stage in plan order; the stages that need it do not run).
    """
    if workers is not None and workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    progress = progress or Progress(quiet=True)
    ray = _init_ray(workers)
    task = ray.remote(num_cpus=1, num_gpus=_task_gpus(ray), max_retries=retries)(stage_task)
    refs: dict[str, Any] = {}
    for node in nodes:
        refs[node["id"]] = task.options(name=node["id"]).remote(
            settings, node["id"], *(refs[need] for need in node["needs"]))
    progress.log(f"{len(refs)} stages as Ray tasks")
    for stage_id, ref in refs.items():
        _results(ray, [ref])
        progress.log(f"{stage_id} done")
    return list(refs)
