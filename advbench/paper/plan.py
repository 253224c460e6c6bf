"""The reproduction as a task graph: `advbench reproduce --plan` lists its stages with their
dependencies and the exact command that runs each; `--emit slurm DIR` writes one sbatch
script per stage, submitted in order by ``DIR/submit.sh`` with ``--dependency=afterok``.

Every stage writes its artifacts under ``--out`` and finds the artifacts of the stages it
needs there (shared storage assumed); the last node, ``report``, is the plain command, which
then finds every stage complete and writes the report.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Callable

from advbench.core.progress import Progress
from advbench.paper.experiments import Reproduction

REPORT_STAGE = "report"


def base_command(repro: Reproduction, out: str, *, data_dir: str | None = None,
                 models_dir: str | None = None) -> list[str]:
    """The plain ``advbench reproduce`` command of ``repro`` as an argument list."""
    command = ["advbench", "reproduce", "--dataset", repro.dataset, "--profile",
               repro.profile.name, "--out", out, "--seed", str(repro.seed)]
    if data_dir:
        command += ["--data-dir", data_dir]
    if models_dir:
        command += ["--models-dir", models_dir]
    return command


def plan(repro: Reproduction, command: list[str]) -> list[dict[str, Any]]:
    """The graph: one dict per stage, {"id", "name", "needs" (ids), "command" (a shell
    line)}, each after the stages it needs, ending with the ``report`` node (the plain
    command, which needs every stage)."""
    stages = repro.stages()
    nodes = [{"id": s.id, "name": s.name, "needs": list(s.needs),
              "command": shlex.join([*command, "--stage", s.id])} for s in stages]
    nodes.append({"id": REPORT_STAGE, "name": "report (tables and figures)",
                  "needs": [s.id for s in stages], "command": shlex.join(command)})
    return nodes


def run_stage(settings: dict[str, Any], stage_id: str, *needs: str) -> str:
    """Run one stage of the reproduction in this process (what a Ray task runs), as
    ``advbench reproduce --stage ID`` does: ``settings`` are ``Reproduction``'s arguments
    (dataset, profile, out, data_dir, models_dir, seed); ``needs`` are the ids the stage's
    dependencies returned (Ray starts the task only once they are done). Returns ``stage_id``.
    """
    Reproduction(**settings, progress=Progress(quiet=True)).run_stage(stage_id)
    return stage_id


def reproduce_with_ray(settings: dict[str, Any], nodes: list[dict[str, Any]], *,
                       workers: int | None = None, retries: int = 3,
                       progress: Progress | None = None,
                       stage_task: Callable[..., str] = run_stage) -> list[str]:
    """Run the stage nodes of ``nodes`` (``plan``; the ``report`` node is left to the caller's
    plain run) as Ray tasks, one per node, in dependency order
    (``advbench.run.ray_engine.run_stages_with_ray``, which says how tasks are retried and
    placed). Returns the stage ids run, in plan order.

    Raises ParameterError without Ray or for workers < 1; a stage's own advbench error as it
    is (the first failed stage in plan order; the stages that need it do not run).
    """
    from advbench.run.ray_engine import run_stages_with_ray

    stages = [node for node in nodes if node["id"] != REPORT_STAGE]
    return run_stages_with_ray(settings, stages, stage_task=stage_task, workers=workers,
                               retries=retries, progress=progress)


def emit_slurm(nodes: list[dict[str, Any]], directory: str | os.PathLike) -> list[Path]:
    """Write ``NNN-<id>.sbatch`` per node and ``submit.sh``, which submits them in order, each
    with ``--dependency=afterok:`` on the jobs of the nodes it needs. Returns the paths
    written (submit.sh last). Add your site's #SBATCH lines (partition, GPUs, time) to the
    scripts, or pass them to sbatch in submit.sh."""
    directory = Path(directory)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    written, job_of = [], {}
    submit = ["#!/bin/bash", "# Submits every stage of the reproduction, each after the stages "
              "it needs (afterok).", "set -euo pipefail", 'cd "$(dirname "$0")"']
    for number, node in enumerate(nodes, 1):
        stem = f"{number:03d}-{re.sub(r'[^A-Za-z0-9.-]+', '-', node['id'])}"
        script = directory / f"{stem}.sbatch"
        _write(script, "\n".join([
            "#!/bin/bash", f"#SBATCH --job-name=advbench-{node['id']}",
            f"#SBATCH --output=logs/{stem}-%j.log", "set -euo pipefail",
            f"# {node['name']}", node["command"], ""]))
        job_of[node["id"]] = f"JOB{number}"
        needs = ":".join(f"${job_of[n]}" for n in node["needs"])
        dependency = f" --dependency=afterok:{needs}" if needs else ""
        submit.append(f"JOB{number}=$(sbatch --parsable{dependency} {script.name})")
        written.append(script)
    submit.append('echo "submitted ' + str(len(nodes)) + ' jobs; the report is job $JOB'
                  + str(len(nodes)) + '"')
    _write(directory / "submit.sh", "\n".join(submit) + "\n")
    (directory / "submit.sh").chmod(0o755)
    return [*written, directory / "submit.sh"]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


#: Formats of ``advbench reproduce --emit FORMAT DIR``.
EMITTERS: dict[str, Callable[[list[dict[str, Any]], str | os.PathLike], list[Path]]] = {
    "slurm": emit_slurm,
}
