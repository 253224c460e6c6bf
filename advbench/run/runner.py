"""The one attack driver: batches, seeds, progress, checkpoints and resume.

Attacks only see one batch at a time; this module feeds them a data split, scores every batch
(predictions, success, perturbation norms), and checkpoints the artifact every few seconds
with a ``completed`` mask. Rerunning the same command (or ``--resume``) continues where an
interrupted run stopped, and the finished artifact is the same as an uninterrupted run's:
every batch has fixed boundaries and a seed derived from the run's seed and the batch start.
The same property lets a run be split into shards (``advbench.run.shards``): shard I/N attacks
batches I, I+N, ... and the shards merge into the one-process artifact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from advbench import __version__, data
from advbench.attacks.autoattack import artifact_table
from advbench.attacks.base import Attack
from advbench.attacks.budgets import parameter_line
from advbench.attacks.targets import TARGET_MODES, choose_targets
from advbench.core.errors import AdvbenchError, ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.data import batch_seed
from advbench.data.samples import Samples, check_model_fits
from advbench.models.foreign import model_provenance
from advbench.models.zoo import forward_function
from advbench.run import START_FROM, START_FROM_ATTACKS, metrics, outputs
from advbench.run.artifacts import ATTACK_SCHEMA, read_attack_artifact, write_arrays
from advbench.run.shards import Shard, check_checkpoint


@dataclasses.dataclass(kw_only=True)
class AttackRun(Samples):
    """What to attack: a model artifact and a slice of a data split."""

    model_path: str
    target_mode: str | None = None  # None: untargeted; "random" / "least-likely"
    start_from: str = "prediction"  # START_FROM: used by START_FROM_ATTACKS, untargeted
    # Which parameters took the data set's defaults, and whose ("eps, step_size: cifar10"),
    # stored as provenance (``budgets.attack_budget``); not part of the run key.
    defaults_from: str = ""

    def validate(self) -> None:
        super().validate()
        if self.target_mode is not None and self.target_mode not in TARGET_MODES:
            raise ParameterError(f"target must be one of {', '.join(TARGET_MODES)}, "
                                 f"got {self.target_mode!r}")
        if self.start_from not in START_FROM:
            raise ParameterError(f"start_from must be one of {', '.join(START_FROM)}, "
                                 f"got {self.start_from!r}")


def starts_from(run: AttackRun, attack: Attack) -> str | None:
    """The class an attack run moves each sample off ("prediction" or "label"), for the
    attacks that start from either (``START_FROM_ATTACKS``, untargeted); None for others."""
    if attack.name in START_FROM_ATTACKS and run.target_mode is None:
        return run.start_from
    return None


def run_parameters(run: AttackRun, attack: Attack, count: int | None = None,
                   shard: Shard | None = None) -> str:
    """The line that starts an attack run: every parameter the attack uses, where the data
    set's defaults came from, targeted or not (and from what), the seed and the samples
    (``count`` of them; None: as many as ``run.limit`` asks, or all of the split)."""
    target = f"targeted ({run.target_mode})" if run.target_mode else "untargeted"
    if starts_from(run, attack):
        target += f", from the {run.start_from}"
    # --limit draws a class-balanced subset, not the first N images: say so.
    drawn = " (class-balanced)" if run.limit is not None else ""
    how_many = (f"{count} samples" if count is not None else
                f"{run.limit} samples" if run.limit is not None else "all samples")
    samples = (f"{how_many}{drawn} of {data.display_name(run.dataset)} {run.split} (start "
               f"{run.start}, batch size {run.batch_size}"
               f"{f', shard {shard}' if shard is not None else ''})")
    return parameter_line(attack.name, {"norm": attack.norm, **attack.shown_params()},
                          defaults_from=run.defaults_from, extra=target, seed=run.seed,
                          samples=samples)


def run_key(run: AttackRun, attack: Attack, model_hash: str, indices: np.ndarray) -> str:
    """The run key (``outputs.run_key``) of an attack run: the attack and its parameters, the
    model's hash, the samples and what else determines the artifact."""
    payload = {
        "attack": attack.name, "params": attack.params(), "model_hash": model_hash,
        "dataset": run.dataset, "split": run.split, "seed": run.seed,
        "batch_size": run.batch_size, "target_mode": run.target_mode,
    }
    # Success is stored against the clean prediction and the label since issue 14 (and
    # fgsm-min searches from the prediction): never reuse an artifact of the label form only.
    payload["success_against"] = "prediction"
    if starts_from(run, attack) is not None:
        # Since issue 19 these attacks start from the prediction by default; before, from the
        # label: artifacts of either never stand in for the other.
        payload["start_from"] = run.start_from
    if run.target_mode is not None:
        # Targets come from attacks.targets.choose_targets since advbench 0.1.0's second
        # chooser (which could pick the true label) was dropped: never reuse those artifacts.
        payload["target_chooser"] = 2
    if run.dataset not in data.DATASETS:
        # A user's file can change under the same path; built-in sets are fixed by name.
        payload["data_hash"] = data.fingerprint(run.dataset)
    return outputs.run_key(payload, indices)


def attack_split(run: AttackRun, attack: Attack, model: Model, model_meta: dict[str, Any],
                 output: str | Path, *, resume: bool = True, overwrite: bool = False,
                 checkpoint_seconds: float = 30.0, progress: Progress | None = None,
                 shard: Shard | None = None,
                 samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Path:
    """Attack a data split batch by batch and write (or complete) the attack artifact.

    A KeyboardInterrupt (Ctrl-C) checkpoints the batches done and is raised again; rerunning
    with the same arguments resumes. With ``shard`` only that shard's batches are attacked
    (same run key and batch seeds as the whole run); the artifact records ``shard_index``
    and ``shard_count`` and is complete only if the shard holds every batch. Every artifact
    records the ``device`` (host and TensorFlow device) that attacked it. ``samples``: the
    run's (x, y, indices) when the caller has loaded them already (``run.load()``).
    """
    run.validate()
    # Same kernels, same bits: shards on other machines must reproduce the one-process run.
    tf.config.experimental.enable_op_determinism()
    if run.target_mode is not None and not attack.accepts_targets():
        raise ParameterError(f"{attack.untargeted_only()} is untargeted only; drop --target")
    progress = progress or Progress(quiet=True)
    output = Path(output)
    x, y, indices = run.load() if samples is None else samples
    check_model_fits(model, model_meta, run.model_path, x, run.dataset)
    key = run_key(run, attack, model_meta.get("content_hash", ""), indices)
    claim: dict[str, Any] = dict(schema=ATTACK_SCHEMA, key=key, noun="a run",
                                 kind="an attack artifact",
                 overwrite=overwrite, resume=resume, shard=shard, num_samples=len(x))
    with contextlib.suppress(AdvbenchError):  # a read-only check: said again under the lock
        if outputs.read_claim(output, **claim).state == "complete":
            progress.log(f"{output} is complete already; nothing to do")
            return output
    # One writer per output: a second run of the same -o waits briefly, then refuses.
    with outputs.claim_output(output, what="attack artifact", **claim) as held:
        if held.state == "complete":
            progress.log(f"{output} is complete already; nothing to do")
            return output
        return _attack_split(run, attack, model, output, (x, y, indices), held, attrs_of(
            run, attack, model_meta, key, len(x), shard),
            checkpoint_seconds=checkpoint_seconds, progress=progress, shard=shard)


def attrs_of(run: AttackRun, attack: Attack, model_meta: dict[str, Any], key: str,
             n: int, shard: Shard | None = None) -> dict[str, Any]:
    """The attributes of a run's attack artifact (provenance, samples and shard)."""
    attrs = {
        "key": key,
        "attack": attack.name, "attack_params": attack.params(), "attack_repr": repr(attack),
        "attack_minimal": attack.minimal, "attack_norm": attack.norm,
        "model_path": str(run.model_path), "model_hash": model_meta.get("content_hash", ""),
        "model_name": model_meta.get("zoo_name", ""), "model_dataset": model_meta.get("dataset"),
        "model_provenance": model_provenance(model_meta),
        "dataset": run.dataset, "data_hash": data.fingerprint(run.dataset, run.data_dir),
        "class_names": list(data.dataset_info(run.dataset).class_names),
        "split": run.split, "limit": run.limit, "start": run.start,
        "seed": run.seed, "batch_size": run.batch_size, "targeted": run.target_mode is not None,
        "target_mode": run.target_mode or "", "num_samples": n, "device": _device(),
        "success_against": "prediction",
    }
    if starts_from(run, attack) is not None:
        attrs["start_from"] = run.start_from
    if run.defaults_from:
        attrs["defaults_from"] = run.defaults_from
    if shard is not None:
        attrs.update(shard_index=shard.index, shard_count=shard.count)
    return attrs


def _attack_split(run: AttackRun, attack: Attack, model, output: Path, samples: tuple,
                  claim: outputs.Claim, attrs: dict[str, Any], *,
                  checkpoint_seconds: float, progress: Progress,
                  shard: Shard | None = None) -> Path:
    x, y, indices = samples
    n = len(x)
    state = _fresh_state(x, y, indices)
    if claim.state == "partial":  # what it holds becomes the artifact: trust no less
        check_checkpoint(output, claim.arrays, state)
        state.update(claim.arrays)
        state["wall_time_s"] = float(claim.attrs.get("wall_time_s", 0.0))
        progress.log(f"resuming: {int(np.count_nonzero(state['completed']))} of {n} "
                     f"samples done in {output}")

    forward = forward_function(model)
    seeds = {sl.start: s for sl, s in batches(n, run.batch_size, run.seed)}
    batch_starts = list(seeds)
    if shard is not None:
        batch_starts = shard.batches(batch_starts)
    todo = [s for s in batch_starts if not state["completed"][s:s + run.batch_size].all()]
    progress.start(f"{attack.name}", len(batch_starts), unit="batches")
    progress.advance(len(batch_starts) - len(todo))
    checkpoints = outputs.Checkpoints(
        lambda complete: _write(output, attrs, state, complete=complete),
        lambda: bool(state["completed"].all()), seconds=checkpoint_seconds, progress=progress)
    if todo:
        # Warnings about this attack on this model, from the run's first batch to attack.
        first = slice(todo[0], min(todo[0] + run.batch_size, n))
        warnings = attack.model_warnings(model, x[first])
        for line in warnings:
            progress.log(f"warning: {line}")
        if warnings:
            attrs["warnings"] = warnings
    with checkpoints:
        for start in todo:
            sl = slice(start, min(start + run.batch_size, n))
            began = time.perf_counter()
            xb, yb = x[sl], y[sl]
            clean_logits = forward(tf.constant(xb)).numpy()
            target = None
            if run.target_mode is not None:
                target = choose_targets(
                    tf.constant(clean_logits), tf.constant(yb), run.target_mode,
                    tf.constant([seeds[start], 0], tf.int64)).numpy().astype(
                        np.int64)
                state["target"][sl] = target
            # Minimal attacks move a sample off the class they start from: the clean
            # prediction by default (as ART), so misclassified samples are attacked too.
            start_class = (clean_logits.argmax(axis=1).astype(np.int64)
                           if starts_from(run, attack) == "prediction" else yb)
            out = attack(model, xb, start_class, target=target, logits=clean_logits,
                         seed=seeds[start])
            adv_pred = forward(tf.constant(out.x_adv)).numpy().argmax(axis=1)
            state["x_adv"][sl] = out.x_adv
            state["pred_clean"][sl] = clean_logits.argmax(axis=1)
            state["pred_adv"][sl] = adv_pred
            for against in metrics.SUCCESS_DEFINITIONS:
                state[SUCCESS_ARRAYS[against]][sl] = metrics.attack_success(
                    adv_pred, state["pred_clean"][sl], yb, target=target, against=against)
            for name, values in metrics.perturbation_norms(xb, out.x_adv).items():
                state[name][sl] = values.astype(np.float32)
            for name, values in out.extras.items():
                arr = state.setdefault(f"extras/{name}",
                                       np.zeros(n, dtype=np.asarray(values).dtype))
                arr[sl] = values
            state["completed"][sl] = True
            state["wall_time_s"] += time.perf_counter() - began
            done = state["completed"]
            correct = done & (state["pred_clean"] == y)
            robust = np.mean(state["pred_adv"][done] == y[done])
            fooled = state["success_label"][correct].mean() if correct.any() else float("nan")
            # A minimal attack has no budget, so no robust accuracy to speak of: it moves
            # every sample it can, misclassified ones included (from the prediction).
            headline = "" if attack.minimal else f"robust acc {robust:.1%}, "
            progress.advance(1, samples=sl.stop - sl.start, status=(
                f"{int(done.sum())}/{n} samples done, {headline}"
                f"success {fooled:.1%} of correct"))
            checkpoints.tick()
    # The attack's own reading of its failures, over the whole run (resumed batches too).
    hint = attack.failure_hint(
        state[SUCCESS_ARRAYS["label" if attrs.get("start_from") == "label" else "prediction"]],
        {name[len("extras/"):]: values for name, values in state.items()
         if name.startswith("extras/")},
        correct=state["completed"] & (state["pred_clean"] == y))
    if hint:
        progress.log(hint)
    return output


def batches(n: int, batch_size: int, seed: int) -> list[tuple[slice, int]]:
    """The driver's batches of n samples: (rows, batch seed) for the batches that start at
    0, batch_size, 2 batch_size, ..., seeded ``data.batch_seed(seed, start)``. The one
    batching and seed rule of attack runs (and their shards), ``attack_arrays``, curves and
    the audit: the same seed and batch size draw the same numbers in each."""
    return [(slice(start, min(start + batch_size, n)), batch_seed(seed, start))
            for start in range(0, n, batch_size)]


def attack_arrays(attack: Attack, model: Model, x: np.ndarray, y: np.ndarray, *,
                  seed: int = 0, batch_size: int = 128, todo: np.ndarray | None = None,
                  progress: Progress | None = None) -> np.ndarray:
    """x_adv of every sample, in memory, batched as an attack run batches: fixed batch
    boundaries 0, batch_size, ... and the seed ``batch_seed(seed, batch start)``, so a
    randomized attack gives here the images ``advbench attack`` gives with the same seed and
    batch size. ``todo``: bool (n,), the samples to attack (default all); the others keep x,
    and a batch's todo samples are attacked together under that batch's seed. The one
    batching of adversarial training's crafting and the audit.

    x: float32 (n, H, W, C) in [0, 1]; y: int (n,) labels. Returns float32 shaped like x.
    """
    x_adv = np.array(x, dtype=np.float32, copy=True)
    todo = np.ones(len(x), bool) if todo is None else np.asarray(todo, bool)
    planned = [(sl, s) for sl, s in batches(len(x), batch_size, seed) if todo[sl].any()]
    if progress:
        progress.start(f"crafting {attack.name}", len(planned))
    for sl, batch_seed_of in planned:
        rows = sl.start + np.flatnonzero(todo[sl])
        x_adv[rows] = attack(model, x[rows], y[rows], seed=batch_seed_of).x_adv
        if progress:
            progress.advance(1, samples=len(rows))
    if progress:
        progress.close()
    return x_adv


def _device() -> str:
    """Where this process attacks: host name and TensorFlow's first GPU, else its CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return f"{socket.gethostname()}:{(gpus[0].name if gpus else '/device:CPU:0')}"


def device_name() -> str:
    """Where this process runs: host name and TensorFlow's first GPU, else its CPU (every
    run artifact records it as ``device``)."""
    return _device()


#: Where an attack artifact stores each form of success (metrics.SUCCESS_DEFINITIONS).
#: Artifacts without the attr ``success_against`` (advbench before issue 14) hold only
#: ``success``, in the label form; ``stored_success`` reads both kinds.
SUCCESS_ARRAYS = {"prediction": "success", "label": "success_label"}


def stored_success(attrs: dict, arrays: dict) -> dict[str, np.ndarray]:
    """Both forms of success of an attack artifact, by ``metrics.SUCCESS_DEFINITIONS`` name,
    from its stored predictions: old artifacts (label form only) are read too."""
    if attrs.get("success_against") == "prediction":
        return {against: np.asarray(arrays[name], bool) for against, name in
                SUCCESS_ARRAYS.items()}
    target = arrays["target"] if attrs.get("targeted") else None
    return {against: metrics.attack_success(arrays["pred_adv"], arrays["pred_clean"],
                                            arrays["y"], target=target, against=against)
            for against in metrics.SUCCESS_DEFINITIONS}


def artifact_summary(path: PathLike, x: np.ndarray) -> dict[str, Any]:
    """The summary of a complete attack artifact on the model it was crafted on, from its
    stored predictions (no model run): accuracies (``robust_accuracy`` = ``adv_accuracy``,
    over all samples), ``success_rate`` over the correctly classified samples with the clean
    errors apart (``metrics.success_counts``), the success rates both ways over all samples
    (``metrics.SUCCESS_DEFINITIONS``), L0/L2/
    L-inf norms over the successful samples and, for a minimal attack, the empirical
    robustness in the attack's norm. ``x``: the clean images it was crafted from (as
    ``AttackRun.load`` gives them), float32 (N, H, W, C). What ``advbench attack --json``
    prints, with the keys of an ``advbench evaluate`` artifact entry."""
    attrs, arrays = read_attack_artifact(path)
    if x.shape != arrays["x_adv"].shape:
        raise ArtifactError(f"{path} holds {arrays['x_adv'].shape} images but "
                            f"{x.shape} clean ones were given")
    both = stored_success(attrs, arrays)
    success = both["prediction"]
    y = arrays["y"]
    norms = {name: arrays[name].astype(np.float64) for name in metrics.PERTURBATION_NORMS}
    summary: dict[str, Any] = {
        "kind": "attack", "path": str(path), "name": Path(path).stem,
        "attack": attrs.get("attack"), "attack_params": attrs.get("attack_params"),
        "minimal": bool(attrs.get("attack_minimal")), "targeted": bool(attrs.get("targeted")),
        "crafted_on": {"path": attrs.get("model_path"), "name": attrs.get("model_name"),
                       "hash": attrs.get("model_hash")},
        "setting": "white-box", "dataset": attrs.get("dataset"), "split": attrs.get("split"),
        "samples": int(len(y)),
        "clean_accuracy": float(np.mean(arrays["pred_clean"] == y)),
        "adv_accuracy": float(np.mean(arrays["pred_adv"] == y)),
        # Robust accuracy, and success over the correctly classified samples (AutoAttack's
        # convention) with the clean errors apart: never capped by the clean accuracy.
        **metrics.success_counts(arrays["pred_adv"], arrays["pred_clean"], y,
                                 target=arrays["target"] if attrs.get("targeted") else None),
        "success_over": "correct", "success_against": "prediction",
        "start_from": attrs.get("start_from"),
        **{f"success_rate_{against}": float(np.mean(value)) for against, value in both.items()},
        "norms": metrics.norm_summary(norms, success),
        "robustness": None, "wall_time_s": attrs.get("wall_time_s"),
        "seed": attrs.get("seed"), "protocol": metrics.protocol(attrs, int(len(y))),
        "autoattack_table": artifact_table(attrs, arrays),
    }
    if summary["minimal"]:
        norm = attrs.get("attack_norm")
        norm = norm if norm in metrics.ROBUSTNESS_NORMS else "l2"
        summary["robustness"] = dataclasses.asdict(
            metrics.empirical_robustness(x, arrays["x_adv"], success, norm=norm))
    return summary


def _fresh_state(x: np.ndarray, y: np.ndarray, indices: np.ndarray) -> dict[str, Any]:
    n = len(x)
    return {
        "x_adv": np.zeros_like(x), "y": y, "indices": indices, "pred_clean": np.full(n, -1, np.int64),
        "pred_adv": np.full(n, -1, np.int64), "success": np.zeros(n, bool),
        "success_label": np.zeros(n, bool),
        "l0": np.zeros(n, np.float32), "l2": np.zeros(n, np.float32),
        "linf": np.zeros(n, np.float32), "completed": np.zeros(n, bool),
        "target": np.full(n, -1, np.int64), "wall_time_s": 0.0,
    }


def _write(output: Path, attrs: dict, state: dict, *, complete: bool) -> None:
    arrays = {k: v for k, v in state.items() if k != "wall_time_s"}
    write_arrays(output, ATTACK_SCHEMA,
                 {**attrs, "complete": complete, "wall_time_s": round(state["wall_time_s"], 3),
                  "advbench_version": __version__}, arrays)
