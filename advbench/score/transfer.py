"""The transfer matrix: adversarial examples crafted on each source model, scored on each
target model (the paper's Table 1; Tables 4-5 for black-box accuracy).

"Efficient Defenses Against Adversarial Attacks" (Zantedeschi et al. 2017,
https://arxiv.org/abs/1707.06728). A cell is white-box when the target is the source model
(same content hash), black-box otherwise. Attack artifacts are found by run key and reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advbench import data
from advbench.attacks.base import Attack
from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import PathLike
from advbench.run.artifacts import ATTACK_SCHEMA, find_artifact, run_artifact_path
from advbench.run.runner import AttackRun, attack_split, run_key, run_parameters
from advbench.run.shards import find_shards
from advbench.score.evaluate import Score, score_artifact


def craft_or_reuse(run: AttackRun, attack: Attack, source: tuple,
                   runs_dir: PathLike = "runs", *,
                   progress: Progress | None = None) -> tuple[Path | list[Path], bool]:
    """The attack artifact of ``attack`` on ``source`` for ``run``'s samples: an existing
    complete one with the same ``runner.run_key`` (the default ``advbench attack`` path, or
    any file in ``runs_dir``), else shard artifacts in ``runs_dir`` that hold the whole run
    together (a list of paths, ``shards.find_shards``), else crafted now with
    ``runner.attack_split`` at the default path. Returns (path or paths, reused)."""
    source_path, model, meta = source
    _, _, indices = data.load(run.dataset, run.split, data_dir=run.data_dir, limit=run.limit,
                              seed=run.seed, start=run.start)
    key = run_key(run, attack, meta.get("content_hash", ""), indices)
    default = run_artifact_path(runs_dir, source_path, attack.name, key)
    found = find_artifact(runs_dir, ATTACK_SCHEMA, key)
    if found is not None:
        return found, True
    shards = find_shards(runs_dir, key)
    if shards is not None:
        return shards, True
    progress = progress or Progress(quiet=True)
    progress.log(run_parameters(run, attack, len(indices)))
    return attack_split(run, attack, model, meta, default, progress=progress), False


def transfer(sources: list[tuple], targets: list[tuple], attack: Attack, *,
             dataset: str | None = None,
             split: str = "test", limit: int | None = None, start: int = 0, seed: int = 0,
             batch_size: int = 128, data_dir: PathLike | None = None,
             runs_dir: PathLike = "runs",
             progress: Progress | None = None) -> Score:
    """The transfer matrix: adversarial examples crafted on each source, scored on each target.

    Rows are sources (crafted on), columns targets (tested on); a cell is white-box when the
    target is the source model (same content hash), black-box otherwise (paper Table 1, with
    FGSM eps 0.1). Artifacts with the same run key are reused, not crafted again.

    Args:
        sources, targets: lists of (path, model, metadata).
        attack: an ``Attack`` object (e.g. ``FGSM(eps=0.1)``).
        dataset: the data set [default: the first source's].
        split, limit, start, seed, batch_size, data_dir: the samples, as for ``advbench attack``.
        runs_dir: where attack artifacts are found and written, default "runs".

    Returns:
        ``Score``: summary with "sources", "targets", "accuracy" = "robust_accuracy" (rows x
        columns: the share of all samples the target still labels right, the headline),
        "success_rate" (among the samples the target classifies correctly, the share the
        attack fooled: AutoAttack's convention, ``metrics.success_counts``; NaN where it
        classifies none correctly; "success_over" says so), "correct" and "clean_errors"
        per target, "success_rate_errors" (the share of the clean errors whose prediction
        moved), "success_rate_prediction" (over all samples, against the target's clean
        prediction: the matrix's rule before issue 19), "setting", "artifacts", "reused";
        per_sample predictions per cell.
    """
    if not sources or not targets:
        raise ParameterError("give at least one --source and one --target")
    progress = progress or Progress(quiet=True)
    dataset = dataset or sources[0][2].get("dataset")
    reference = {"dataset": dataset}
    names = {meta.get("dataset") for _, _, meta in [*sources, *targets]} | {dataset}
    if dataset and not names <= {None, *data.DATASETS}:
        # A user's data: compare contents (built-in sets are compared by name).
        reference["data_hash"] = data.fingerprint(dataset, data_dir)
    for path, _, meta in [*sources, *targets]:
        if not data.same_data(meta, reference):
            raise ArtifactError(f"model {path} was trained on "
                                f"{data.display_name(meta.get('dataset'))}, not "
                                f"{data.display_name(dataset)}; transfer needs models of one "
                                "data set")
    accuracy = np.zeros((len(sources), len(targets)))
    success, errors_moved, moved = (np.zeros_like(accuracy) for _ in range(3))
    clean = np.zeros(len(targets))
    correct, clean_errors = [0] * len(targets), [0] * len(targets)
    setting, artifacts, reused, per_sample = [], [], [], {}
    for s, source in enumerate(sources):
        run = AttackRun(model_path=str(source[0]), dataset=dataset, split=split, limit=limit,
                        start=start, batch_size=batch_size, seed=seed, data_dir=data_dir)
        path, was_reused = craft_or_reuse(run, attack, source, runs_dir, progress=progress)
        label = ", ".join(map(str, path)) if isinstance(path, list) else str(path)
        progress.log(f"{'reusing' if was_reused else 'crafted'} {label}")
        artifacts.append(label)
        reused.append(was_reused)
        row = []
        for t, (target_path, model, meta) in enumerate(targets):
            score = score_artifact(model, meta, target_path, path, data_dir=data_dir,
                                   batch_size=max(batch_size, 256), model_level=False,
                                   progress=progress)
            accuracy[s, t] = score.summary["robust_accuracy"]
            success[s, t] = score.summary["success_rate"]
            errors_moved[s, t] = score.summary["success_rate_errors"]
            moved[s, t] = score.summary["success_rate_prediction"]
            clean[t] = score.summary["clean_accuracy"]
            correct[t], clean_errors[t] = score.summary["correct"], score.summary["clean_errors"]
            row.append(score.summary["setting"])
            per_sample[f"cells/{s}_{t}/pred"] = score.per_sample["pred"]
            per_sample[f"cells/{s}_{t}/success"] = score.per_sample["success"]
        setting.append(row)

    def describe(entry):
        path, _, meta = entry
        return {"path": str(path), "name": meta.get("zoo_name") or Path(path).stem,
                "hash": meta.get("content_hash")}

    summary = {
        "attack": attack.name, "attack_params": attack.params(), "dataset": dataset,
        "split": split, "samples": int(len(per_sample["cells/0_0/pred"])),
        "sources": [describe(e) for e in sources], "targets": [describe(e) for e in targets],
        "clean_accuracy": clean.tolist(), "accuracy": accuracy.tolist(),
        "robust_accuracy": accuracy.tolist(), "success_rate": success.tolist(),
        "success_over": "correct", "correct": correct, "clean_errors": clean_errors,
        "success_rate_errors": errors_moved.tolist(),
        "success_rate_prediction": moved.tolist(), "setting": setting,
        "artifacts": artifacts,
        "reused": reused,
    }
    per_sample["accuracy"] = accuracy
    return Score(summary, per_sample)
