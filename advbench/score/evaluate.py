"""Scoring models on saved artifacts: clean accuracy, adversarial accuracy, the paper's
model-level metrics and the robustness gate (the transfer matrix: ``advbench.score.transfer``).

"Efficient Defenses Against Adversarial Attacks" (Zantedeschi et al. 2017,
https://arxiv.org/abs/1707.06728): Table 1 (transfer matrix), Table 2 (accuracy, robustness
and training-set distance under minimal FGSM), Table 3 (loss sensitivity), Tables 4-5
(black-box accuracy). An attack artifact is scored by running the model on its saved
``x_adv``: no attack is ever run again to score it. The artifact is white-box for the model
it was crafted on (same content hash) and black-box for any other.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from advbench import data
from advbench.attacks import MINIMAL_ATTACKS
from advbench.attacks.autoattack import artifact_table
from advbench.core.errors import ArtifactError, OptionError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.data.samples import Samples, check_model_fits, clean_samples, training_set
from advbench.models.foreign import model_provenance
from advbench.models.zoo import predict_labels
from advbench.run import metrics
from advbench.run.artifacts import (ATTACK_SCHEMA, CERTIFICATION_SCHEMA, CURVE_SCHEMA,
                                    EVALUATION_SCHEMA, artifact_kind, jsonable, open_artifact,
                                    read_arrays, read_attrs, write_arrays)
from advbench.run.curves import read_curve
from advbench.run.shards import Shard, group_shards, read_attack_run
from advbench.score.certify import DEFAULT_RADII, certification_entry
from advbench.score.metric_registry import METRICS, Metric, gate_names, lookup, worst

#: Query rows per block of the training-set distance (``metrics.query_blocks``), and so the
#: unit a distance shard takes: 10,000 test images make 20 blocks, so 20 useful shards.
DISTANCE_BLOCK = 512
#: The ``kind`` of an evaluation artifact holding one shard of training-set distances.
DISTANCE_PART = "distance-part"


# -- reading and checking attack artifacts -------------------------------------------------
def check_fits(path: PathLike, attrs: dict, x_adv: np.ndarray, model: Model,
               model_meta: dict, model_path: PathLike) -> None:
    """Refuse an artifact of another data set or of images the model cannot take."""
    check_same_data(path, attrs, model_meta, model_path)
    shape = tuple(model.input_shape[1:])
    if tuple(x_adv.shape[1:]) != shape:
        raise ArtifactError(f"{path} holds images of shape {tuple(x_adv.shape[1:])} but model "
                            f"{model_path} takes {shape}; give artifacts crafted for its input")


def check_same_data(path: PathLike, attrs: dict, model_meta: dict,
                    model_path: PathLike) -> None:
    """ArtifactError unless the artifact at ``path`` (its ``attrs``) holds the model's data."""
    if data.same_data(model_meta, attrs):
        return
    held = data.display_name(attrs.get("dataset"))
    if model_meta.get("model_kind"):
        # Your own model: its data is what --dataset/--data said, not a training record.
        raise ArtifactError(f"{path} holds {held} images but --dataset/--data gave "
                            f"{data.display_name(model_meta.get('dataset'))} for model "
                            f"{model_path}{_hash_note(model_meta, attrs)}; pass the data "
                            "the artifact was crafted on")
    raise ArtifactError(f"{path} holds {held} images but model {model_path} was trained on "
                        f"{data.display_name(model_meta.get('dataset'))}"
                        f"{_hash_note(model_meta, attrs)}; give artifacts of its data")


def _hash_note(a: dict, b: dict) -> str:
    same_name = a.get("dataset") == b.get("dataset")
    return " (same name, other content: the data hash differs)" if same_name else ""


# -- scoring one artifact --------------------------------------------------------------------
@dataclasses.dataclass
class Score:
    """A scoring result: the JSON-ready ``summary`` and per-sample arrays by name (one
    artifact on one model, a whole evaluation, or a transfer matrix)."""

    summary: dict[str, Any]
    per_sample: dict[str, np.ndarray]


def success_fields(pred_adv: np.ndarray, pred_clean: np.ndarray, y: np.ndarray,
                   target: np.ndarray | None) -> dict[str, Any]:
    """The summary keys of ``metrics.success_counts``: ``robust_accuracy`` (all samples),
    ``success_rate`` over the correctly classified samples (``success_over``: "correct"),
    ``correct``, ``clean_errors`` and ``success_rate_errors``."""
    return {**metrics.success_counts(pred_adv, pred_clean, y, target=target),
            "success_over": "correct"}


def score_artifact(model: Model, model_meta: dict, model_path: PathLike,
                   path: PathLike | Sequence[PathLike], *,
                   data_dir: PathLike | None = None,
                   batch_size: int = 256, training: Callable[[], np.ndarray] | None = None,
                   distance_variant: str = "l2", model_level: bool = True,
                   success_against: str = "prediction",
                   distances: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   progress: Progress | None = None) -> Score:
    """Score ``model`` on the saved adversarial examples of an attack artifact (``progress``:
    shows its two passes over the images).

    Accuracy is the fraction of x_adv the model classifies as the true label. Success is
    judged on THIS model, both ways (``metrics.attack_success``): untargeted, the prediction
    on x_adv differs from the model's prediction on the clean image ("prediction", as ART
    and the paper's authors) or from the label ("label"); targeted, it is the target.
    The headline ``robust_accuracy`` (= ``adv_accuracy``) is label-based over all samples;
    ``success_rate`` is over the samples the model classifies correctly (AutoAttack's
    convention, ``metrics.success_counts``), with ``clean_errors`` and
    ``success_rate_errors`` apart, so a model's clean errors never cap it. The perturbation
    norms, robustness and training distance average over the successful samples of
    ``success_against``; the summary also holds ``success_rate_prediction`` and
    ``success_rate_label`` (over all samples, as before issue 19). For a minimal-perturbation attack
    crafted on this very model (white-box), also the empirical robustness (in the attack's
    norm: L-inf for fgsm-min as in ART, L2 for deepfool and cw-l2) and, when ``training`` is
    given, the nearest-training-image distance (``metrics.nearest_training_distance``).

    Args:
        model, model_meta, model_path: the scored model, its artifact metadata and path.
        path: the attack artifact (``advbench attack`` output), or a list of the shard
            artifacts of one run (merged in memory, ``shards.read_attack_run``).
        data_dir: where the clean data set is (to reload the clean images).
        batch_size: prediction batch, default 256.
        training: callable returning the training images (loaded only when needed).
        distance_variant: "l2" (default) or "paper" (see ``nearest_training_distance``).
        model_level: compute robustness and training distance where they apply (default).
        success_against: "prediction" (default) or "label" (``metrics.SUCCESS_DEFINITIONS``).
        distances: (distances, nearest indices) by run key, already computed (the combined
            distance parts, ``combine_distance_parts``); a run found here is not measured
            again.

    Returns:
        ``Score(summary, per_sample)``; per_sample has indices, pred, success, l0, l2, linf
        and, when computed, nearest_distance and nearest_index.
    """
    if success_against not in metrics.SUCCESS_DEFINITIONS:
        raise ParameterError(f"success must be judged against one of "
                             f"{', '.join(metrics.SUCCESS_DEFINITIONS)}, got {success_against!r}")
    attrs, arrays = read_attack_run(path)
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    # Shards of one run are named as the run: their paths joined, the stem without -shardIofN.
    path = ", ".join(map(str, paths))
    name = re.sub(r"-shard\d+of\d+$", "", paths[0].stem)
    x_adv = arrays["x_adv"]
    check_fits(path, attrs, x_adv, model, model_meta, model_path)
    x_clean = clean_samples(path, attrs, arrays, data_dir)
    y = arrays["y"]
    pred = predict_labels(model, x_adv, batch_size, progress=progress, what="adversarial pass")
    pred_clean = predict_labels(model, x_clean, batch_size, progress=progress)
    targeted = bool(attrs.get("targeted"))
    both = {against: metrics.attack_success(pred, pred_clean, y, target=arrays["target"]
                                            if targeted else None, against=against)
            for against in metrics.SUCCESS_DEFINITIONS}
    success = both[success_against]
    white_box = bool(attrs.get("model_hash")) and attrs.get("model_hash") == \
        model_meta.get("content_hash")
    norms = metrics.perturbation_norms(x_clean, x_adv, norms=metrics.NORMS)
    _check_declared_budget(path, attrs, norms)
    per_sample = {"indices": arrays["indices"], "pred": pred, "pred_clean": pred_clean,
                  "success": success, "success_label": both["label"], **norms}
    minimal = bool(attrs.get("attack_minimal"))
    summary: dict[str, Any] = {
        "kind": "attack", "path": path, "name": name,
        "attack": attrs.get("attack"), "attack_params": attrs.get("attack_params"),
        "minimal": minimal, "targeted": targeted,
        "crafted_on": {"path": attrs.get("model_path"), "name": attrs.get("model_name"),
                       "hash": attrs.get("model_hash")},
        "setting": "white-box" if white_box else "black-box",
        "dataset": attrs["dataset"], "split": attrs.get("split"), "samples": int(len(y)),
        "clean_accuracy": float(np.mean(pred_clean == y)),
        "adv_accuracy": float(np.mean(pred == y)),
        **success_fields(pred, pred_clean, y, arrays["target"] if targeted else None),
        "success_against": success_against, "start_from": attrs.get("start_from"),
        **{f"success_rate_{against}": float(np.mean(value)) for against, value in both.items()},
        "norms": metrics.norm_summary(norms, success),
        "robustness": None, "training_distance": None,
        "per_class_accuracy": per_class_accuracy(
            pred, y, len(attrs.get("class_names") or []) or int(y.max(initial=0)) + 1),
        "seed": attrs.get("seed"), "protocol": metrics.protocol(attrs, int(len(y))),
        # AutoAttack's robust accuracy after each member, on the model it was crafted on.
        "autoattack_table": artifact_table(attrs, arrays) if white_box else None,
    }
    if model_level and minimal and white_box:
        norm = attrs.get("attack_norm")
        norm = norm if norm in metrics.ROBUSTNESS_NORMS else "l2"
        robustness = metrics.empirical_robustness(x_clean, x_adv, success, norm=norm)
        summary["robustness"] = dataclasses.asdict(robustness)
        if training is not None:
            if distances is not None and attrs.get("key") in distances:
                distance, nearest = distances[attrs["key"]]
            else:
                distance, nearest = metrics.nearest_training_distance(
                    x_adv, training(), variant=distance_variant, query_chunk=DISTANCE_BLOCK,
                    x_clean=x_clean if distance_variant == "paper" else None)
            summary["training_distance"] = {
                **metrics.success_summary(distance, success), "variant": distance_variant}
            per_sample["nearest_distance"] = distance
            per_sample["nearest_index"] = nearest
    return Score(summary, per_sample)


def _check_declared_budget(path: PathLike, attrs: dict, norms: dict[str, np.ndarray]) -> None:
    """Refuse a bounded attack's artifact whose perturbations exceed the eps its header
    declares (an edited header would put a false eps beside the scores). The tolerance
    covers float32 storage: a relative 1e-4 plus 1e-5."""
    params = attrs.get("attack_params") or {}
    eps, norm = params.get("eps"), attrs.get("attack_norm")
    if attrs.get("attack_minimal") or norm not in ("linf", "l2", "l1") or \
            not isinstance(eps, (int, float)) or isinstance(eps, bool) or not len(norms[norm]):
        return
    largest = float(np.max(norms[norm]))
    if largest > eps * (1 + 1e-4) + 1e-5:
        raise ArtifactError(f"{path}: a sample is perturbed by {largest:.6g} in {norm} but the "
                            f"header declares eps {eps:g}; the file was edited or is corrupt: "
                            "run the attack again")


def score_curve(model_meta: dict, model_path: PathLike, path: PathLike) -> dict[str, Any]:
    """The curve of ``model`` in a curve artifact (it must be one of its targets)."""
    curve = read_curve(path)
    if not data.same_data(model_meta, curve.attrs):
        raise ArtifactError(f"{path} holds a {data.display_name(curve.attrs.get('dataset'))} "
                            f"curve but model {model_path} was trained on "
                            f"{data.display_name(model_meta.get('dataset'))}")
    index = curve.target_index(model_meta.get("content_hash", ""))
    if index is None:
        raise ArtifactError(f"{path} does not score model {model_path}; compute its curve "
                            "with `advbench transfer --source SOURCE --target MODEL --eps ...`")
    summary = curve.summary()
    target = summary.pop("targets")[index]
    return {"kind": "curve", "name": Path(path).stem, **summary, "setting": target["setting"],
            "clean_accuracy": target["clean_accuracy"], "accuracy": target["accuracy"]}


# -- the training-set distance in shards -------------------------------------------------------
def _scoring_checks(model_meta: dict, model_path: PathLike, distance_variant: str,
                    artifacts: Sequence[PathLike]) -> tuple[str, list[list[Path]], list]:
    """(the model's data set, the artifacts grouped by run, each group's schema), after the
    checks that must fail before any work: the variant, the model's data set, and every
    artifact's kind (a typo in the last path must not cost a full run)."""
    if distance_variant not in metrics.DISTANCE_VARIANTS:
        raise ParameterError(f"distance variant must be one of "
                             f"{', '.join(metrics.DISTANCE_VARIANTS)}, got {distance_variant!r}")
    dataset = model_meta.get("dataset")
    if not dataset:
        raise ArtifactError(f"model {model_path} does not say which data set it was trained on; "
                            "re-train it with `advbench train`")
    groups = group_shards(artifacts)
    kinds = []
    for group in groups:
        kind = artifact_kind(group[0]) if Path(group[0]).exists() else None
        if kind not in (ATTACK_SCHEMA, CURVE_SCHEMA, CERTIFICATION_SCHEMA):
            read_arrays(group[0], ATTACK_SCHEMA)  # raises the precise one-line error
        if kind == CERTIFICATION_SCHEMA:
            _check_certified_model(group[0], model_meta, model_path)
        if kind == ATTACK_SCHEMA:
            with open_artifact(group[0], ATTACK_SCHEMA) as f:
                check_same_data(group[0], read_attrs(f), model_meta, model_path)
        kinds.append(kind)
    return dataset, groups, kinds


def _check_certified_model(path: PathLike, model_meta: dict, model_path: PathLike) -> None:
    """ArtifactError unless the certification at ``path`` was made on this model: a
    certificate holds for the smoothed classifier of the model that drew the noise, so
    another model's certified accuracy must never be reported (or gated) as this one's."""
    with open_artifact(path, CERTIFICATION_SCHEMA) as f:
        attrs = read_attrs(f)
    if attrs.get("model_hash") != model_meta.get("content_hash"):
        raise ArtifactError(f"{path} certifies model {attrs.get('model_path')}, not "
                            f"{model_path} (their hashes differ); a certificate holds only for "
                            "the model it was made on: evaluate it with that model, or certify "
                            "this one")


def _gets_distance(attrs: dict, model_meta: dict) -> bool:
    """Whether scoring gives this attack run a training-set distance: a minimal attack
    crafted on the scored model (as ``score_artifact`` decides)."""
    return bool(attrs.get("attack_minimal")) and bool(attrs.get("model_hash")) and \
        attrs.get("model_hash") == model_meta.get("content_hash")


def is_distance_part(path: PathLike) -> bool:
    """Whether ``path`` is a distance part (``advbench evaluate --distance-shard``)."""
    if not Path(path).exists() or artifact_kind(path) != EVALUATION_SCHEMA:
        return False
    return read_arrays(path, EVALUATION_SCHEMA, names=[])[0].get("kind") == DISTANCE_PART


def distance_part(model_meta: dict, model_path: PathLike, artifacts: Sequence[PathLike],
                  shard: Shard, *, data_dir: PathLike | None = None,
                  distance_variant: str = "l2", progress: Progress | None = None) -> Score:
    """Shard ``shard`` of the training-set distances that ``evaluate`` computes for
    ``artifacts``: for every minimal attack run crafted on the model, the query blocks
    I, I+N, ... (``metrics.query_blocks`` with ``DISTANCE_BLOCK`` rows) of
    ``metrics.nearest_training_distance``, the same bits as one process computes for them.
    Nothing else is scored. Write it with ``write_evaluation(path, part, kind=DISTANCE_PART)``;
    ``evaluate`` given every part of a run takes its distances from them
    (``combine_distance_parts``).

    Returns:
        ``Score``: summary {kind, shard [I, N], dataset, data_hash (of the data the training
        set comes from), variant, block, model {path, hash}, runs [{key, path, samples,
        rows}]}; per_sample ``runs/<j>/rows`` (bool (n,): the rows this part holds),
        ``runs/<j>/nearest_distance`` (float64 (n,), NaN outside rows) and
        ``runs/<j>/nearest_index`` (int64 (n,), -1 outside rows).

    Raises:
        ParameterError: when no artifact gets a training-set distance from this model.
        ArtifactError: as ``score_artifact`` for unreadable, incomplete or mismatched runs.
    """
    dataset, groups, kinds = _scoring_checks(model_meta, model_path, distance_variant,
                                             artifacts)
    progress = progress or Progress(quiet=True)
    cache: dict[str, np.ndarray] = {}
    runs: list[dict[str, Any]] = []
    per_sample: dict[str, np.ndarray] = {}
    for group, kind in zip(groups, kinds):
        if kind == CURVE_SCHEMA:
            continue
        attrs, arrays = read_attack_run(group)
        name = ", ".join(map(str, group))
        if not _gets_distance(attrs, model_meta):
            continue
        if not attrs.get("key"):
            raise ArtifactError(f"{name} lacks its run key; it is not written by `advbench "
                                "attack`: run the attack again")
        x_clean = clean_samples(name, attrs, arrays, data_dir)
        if "x" not in cache:
            cache["x"] = training_set(dataset, data_dir)
        n = len(arrays["x_adv"])
        rows = np.zeros(n, dtype=bool)
        for block in metrics.query_blocks(n, DISTANCE_BLOCK, (shard.index, shard.count)):
            rows[block] = True
        progress.log(f"training-set distance of {name}: shard {shard}, {int(rows.sum())} of "
                     f"{n} rows")
        distance, nearest = metrics.nearest_training_distance(
            arrays["x_adv"], cache["x"], variant=distance_variant, query_chunk=DISTANCE_BLOCK,
            x_clean=x_clean if distance_variant == "paper" else None,
            shard=(shard.index, shard.count))
        j = len(runs)
        runs.append({"key": attrs["key"], "path": name, "samples": n, "rows": int(rows.sum())})
        per_sample.update({f"runs/{j}/rows": rows, f"runs/{j}/nearest_distance": distance,
                           f"runs/{j}/nearest_index": nearest})
    if not runs:
        raise ParameterError(f"no given artifact gets a training-set distance from model "
                             f"{model_path}: that needs a minimal attack "
                             f"({', '.join(MINIMAL_ATTACKS)}) crafted on it")
    summary = {"kind": DISTANCE_PART, "shard": [shard.index, shard.count], "dataset": dataset,
               "data_hash": data.fingerprint(dataset, data_dir), "variant": distance_variant,
               "block": DISTANCE_BLOCK,
               "model": {"path": str(model_path), "hash": model_meta.get("content_hash")},
               "runs": runs}
    return Score(summary, per_sample)


def combine_distance_parts(parts: Sequence[PathLike], runs: dict[str, tuple[str, bool]], *,
                           dataset: str, model_path: PathLike, data_dir: PathLike | None = None,
                           distance_variant: str = "l2"
                           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(distances, nearest indices) by run key, each run's rows taken from the distance parts
    (``distance_part``) that hold them: the arrays one process computes, bit for bit.

    Args:
        parts: distance part artifacts (``advbench evaluate --distance-shard``).
        runs: the given attack runs: run key -> (name, whether it gets a distance here).
        dataset, data_dir: the training set the distances must be to.
        model_path: the scored model (for messages).
        distance_variant: the variant the parts must hold.

    Raises:
        ArtifactError: a part of another training set, variant or block size, of a run not
            given or one that gets no distance here; two parts holding the same rows; a run
            whose parts leave rows out.
    """
    fingerprint = data.fingerprint(dataset, data_dir)
    found: dict[str, list[tuple[Path, list, dict[str, np.ndarray]]]] = {}
    for path in map(Path, parts):
        attrs, arrays = read_arrays(path, EVALUATION_SCHEMA)
        summary = attrs.get("summary") or {}
        if summary.get("dataset") != dataset or summary.get("data_hash") != fingerprint:
            raise ArtifactError(f"{path} holds distances to another "
                                f"{data.display_name(dataset)} training set than the one here "
                                "(the data hash differs); compute every part on the same data")
        if summary.get("variant") != distance_variant:
            raise ArtifactError(f"{path} holds {summary.get('variant')} distances, not "
                                f"{distance_variant}; evaluate with --distance-variant "
                                f"{summary.get('variant')} or compute the parts again")
        if summary.get("block") != DISTANCE_BLOCK:
            raise ArtifactError(f"{path} was cut in blocks of {summary.get('block')} query "
                                f"rows, not {DISTANCE_BLOCK}; compute the parts again with "
                                "this advbench")
        for j, run in enumerate(summary.get("runs") or []):
            key = run.get("key")
            if key not in runs:
                raise ArtifactError(f"{path} holds distances of another attack run than the "
                                    "given artifacts (run keys differ); give the parts of "
                                    "their runs")
            name, gets = runs[key]
            if not gets:
                raise ArtifactError(f"{path} holds distances of {name}, which gets none from "
                                    f"model {model_path} (not a minimal attack crafted on it); "
                                    "drop the part")
            found.setdefault(key, []).append((path, summary.get("shard") or [], {
                field: arrays[f"runs/{j}/{field}"]
                for field in ("rows", "nearest_distance", "nearest_index")}))
    out = {}
    for key, items in found.items():
        name = runs[key][0]
        owner = np.full(len(items[0][2]["rows"]), -1)
        for k, (path, _, part) in enumerate(items):
            rows = part["rows"]
            if rows.shape != owner.shape:
                raise ArtifactError(f"{path} holds {len(rows)} rows of {name}, which has "
                                    f"{len(owner)}; compute the parts again")
            both = rows & (owner >= 0)
            if both.any():
                raise ArtifactError(f"{path} and {items[int(owner[both][0])][0]} both hold "
                                    f"rows of {name}; give each part once")
            owner[rows] = k
        if (owner < 0).any():
            counts = {int(shard[1]) for _, shard, _ in items if len(shard) == 2}
            missing = ""
            if len(counts) == 1:
                count = counts.pop()
                have = {int(shard[0]) for _, shard, _ in items}
                missing = " (missing: " + ", ".join(
                    f"{i}/{count}" for i in range(count) if i not in have) + ")"
            raise ArtifactError(f"the distance parts of {name} hold "
                                f"{int(np.count_nonzero(owner >= 0))} of {len(owner)} rows; "
                                f"give every part{missing}")
        distance = np.empty(len(owner), dtype=np.float64)
        nearest = np.empty(len(owner), dtype=np.int64)
        for k, (_, _, part) in enumerate(items):
            distance[owner == k] = part["nearest_distance"][owner == k]
            nearest[owner == k] = part["nearest_index"][owner == k]
        out[key] = (distance, nearest)
    return out


# -- evaluating a model ----------------------------------------------------------------------
def evaluate(model: Model, model_meta: dict, model_path: PathLike,
             artifacts: Sequence[PathLike] = (), *, split: str = "test",
             limit: int | None = None, start: int = 0, seed: int = 0,
             data_dir: PathLike | None = None,
             batch_size: int = 256, sensitivity: bool = True, distance: bool = True,
             distance_variant: str = "l2", success_against: str = "prediction",
             sensitivity_variant: str = "loss", radii: Sequence[float] = DEFAULT_RADII,
             progress: Progress | None = None) -> Score:
    """Score a model on a clean split and on saved attack / curve / certification artifacts.

    Clean: accuracy and loss sensitivity (Table 3; ``metrics.loss_sensitivity``) on the split
    slice (``data.load`` with split, limit, seed, start). Each attack artifact: see
    ``score_artifact``. Each curve artifact: the model's accuracy per eps.

    Args:
        model, model_meta, model_path: the model (logits), its metadata and artifact path.
        artifacts: paths of attack or curve artifacts; the shard artifacts of one run
            (``advbench attack --shard``) are merged in memory and scored as one. Distance
            parts (``distance_part``) among them give the training-set distance of their
            runs instead of computing it (``combine_distance_parts``; every part needed).
        split, limit, start, seed, data_dir: the clean samples (defaults: the whole test split).
        batch_size: batch of predictions and gradients, default 256.
        sensitivity: compute loss sensitivity (default True).
        distance: compute the training-set distance for white-box minimal artifacts (default).
        distance_variant: "l2" (default) or "paper".
        success_against: what an untargeted attack must change to succeed: "prediction"
            (default: the model's clean prediction, as ART) or "label" (see
            ``score_artifact``).
        sensitivity_variant: what the loss sensitivity differentiates: "loss" (default, the
            paper's text, at the true label), or the authors' code's "softmax" / "logit" of
            the predicted class (``metrics.loss_sensitivity_per_sample``).
        radii: L2 radii ([0, 1] pixel units, >= 0) at which certification artifacts report
            certified accuracy (``certify.certification_entry``), default 0 to 1 by 0.25.
            A certification entry describes the smoothed classifier of the model it names
            (``certified_on``), whichever MODEL is scored.

    Returns:
        ``Score``; ``summary["metrics"]`` holds the gate values (see ``METRICS``).

    Example:
        >>> result = evaluate(model, meta, "models/mnist-cnn-relu-none.h5", ["runs/a.h5"])
        >>> result.summary["metrics"]["adv_accuracy"]
    """
    if success_against not in metrics.SUCCESS_DEFINITIONS:
        raise ParameterError(f"success must be judged against one of "
                             f"{', '.join(metrics.SUCCESS_DEFINITIONS)}, got {success_against!r}")
    if sensitivity_variant not in metrics.SENSITIVITY_VARIANTS:
        raise ParameterError(f"sensitivity variant must be one of "
                             f"{', '.join(metrics.SENSITIVITY_VARIANTS)}, "
                             f"got {sensitivity_variant!r}")
    Samples(dataset="", split=split, limit=limit, start=start, seed=seed,
            batch_size=batch_size).validate()
    radii = parse_radii(radii)
    progress = progress or Progress(quiet=True)
    parts = [p for p in artifacts if is_distance_part(p)]
    if parts and not distance:
        raise ParameterError("distance parts were given but the training-set distance is off "
                             "(--no-distance); drop one or the other")
    dataset, groups, kinds = _scoring_checks(model_meta, model_path, distance_variant,
                                             [p for p in artifacts if p not in parts])
    if distance and not parts and data.dataset_info(dataset).train_size == 0:
        # A test-only data set (an .npz of x, y; a folder without train/ and test/) has no
        # training images to measure against: the distance is left out and said, not an error.
        progress.log(f"training-set distance: left out, {data.display_name(dataset)} holds no "
                     "training split (save x_train, y_train, x_test, y_test, or a folder with "
                     "train/ and test/, to measure it)")
        distance = False
    distances = None
    if parts:
        runs: dict[str, tuple[str, bool]] = {}
        for group, kind in zip(groups, kinds):
            attrs = read_arrays(group[0], ATTACK_SCHEMA, names=[])[0] \
                if kind == ATTACK_SCHEMA else {}
            if attrs.get("key"):  # a run without a key has no parts (distance_part refuses)
                runs[attrs["key"]] = (", ".join(map(str, group)),
                                      _gets_distance(attrs, model_meta))
        distances = combine_distance_parts(parts, runs, dataset=dataset, model_path=model_path,
                                           data_dir=data_dir, distance_variant=distance_variant)

    x, y, indices = data.load(dataset, split, data_dir=data_dir, limit=limit, seed=seed,
                              start=start)
    check_model_fits(model, model_meta, model_path, x, dataset)
    progress.log(f"scoring {model_path} on {len(x)} clean {data.display_name(dataset)} "
                 f"{split} images")
    pred = predict_labels(model, x, batch_size, progress=progress)
    per_sample = {"clean/indices": indices, "clean/y": y, "clean/pred": pred}
    class_names = list(data.dataset_info(dataset).class_names)
    clean = {"dataset": dataset, "split": split, "samples": int(len(x)),
             "accuracy": float(np.mean(pred == y)), "loss_sensitivity": None,
             "loss_sensitivity_variant": sensitivity_variant if sensitivity else None,
             "class_names": class_names,
             "per_class_accuracy": per_class_accuracy(pred, y, len(class_names))}
    if sensitivity:
        gradient_norms = metrics.loss_sensitivity_per_sample(
            model, x, y, batch_size=batch_size, variant=sensitivity_variant, progress=progress)
        per_sample["clean/loss_gradient_norm"] = gradient_norms
        clean["loss_sensitivity"] = float(np.mean(gradient_norms))

    cache: dict[str, np.ndarray] = {}

    def training() -> np.ndarray:
        if "x" not in cache:
            cache["x"] = training_set(dataset, data_dir)
        return cache["x"]

    entries = []
    for k, (group, kind) in enumerate(zip(groups, kinds)):
        path = group[0]
        progress.log(f"scoring {', '.join(map(str, group))}")
        if kind == CURVE_SCHEMA:
            entries.append(score_curve(model_meta, model_path, path))
            continue
        if kind == CERTIFICATION_SCHEMA:
            entries.append(certification_entry(group, radii))
            continue
        score = score_artifact(model, model_meta, model_path, group, data_dir=data_dir,
                               batch_size=batch_size, training=training if distance else None,
                               distance_variant=distance_variant,
                               success_against=success_against, distances=distances,
                               progress=progress)
        entries.append(score.summary)
        per_sample.update({f"artifacts/{k}/{name}": v for name, v in score.per_sample.items()})

    summary = {
        "model": {"path": str(model_path), "name": model_meta.get("zoo_name"),
                  "hash": model_meta.get("content_hash"), "dataset": dataset,
                  "provenance": model_provenance(model_meta)},
        "clean": clean, "artifacts": entries,
    }
    summary["metrics"] = aggregate_metrics(summary)
    return Score(summary, per_sample)


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> list:
    """Accuracy per class (None for a class without samples), in class order."""
    return [float(np.mean(pred[y == c] == c)) if np.any(y == c) else None
            for c in range(num_classes)]


def _read(entries: list[dict], metric: Metric, radius: float = 0.0) -> list[float]:
    """``metric``'s values in the evaluation entries of its scope (None left out)."""
    values = (metric.read(e, radius) for e in entries if e.get("kind") == metric.scope)
    return [v for v in values if v is not None]


def aggregate_metrics(summary: dict) -> dict[str, float | None]:
    """The gate values of an evaluation summary (the ``summary`` metrics of
    ``metric_registry.METRICS``): each artifact metric at its worst over the artifacts that
    have it, certification metrics only when a certification is given; None where no
    artifact (or clean run) provides it."""
    certified = any(e.get("kind") == "certification" for e in summary["artifacts"])
    out: dict[str, float | None] = {}
    for metric in METRICS.values():
        if not metric.summary or (metric.scope == "certification" and not certified):
            continue
        out[metric.name] = metric.read(summary["clean"]) if metric.scope == "clean" else \
            worst(_read(summary["artifacts"], metric), metric.better)
    return out


def parse_radii(radii: Sequence[float]) -> tuple[float, ...]:
    """Radii sorted and unique, each a finite number >= 0; ParameterError otherwise."""
    out = []
    for r in radii:
        if not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise ParameterError(f"radius must be a finite number >= 0, got {r!r}")
        out.append(float(r))
    return tuple(sorted(set(out)))


def threshold_radii(thresholds: Sequence["Threshold"]) -> tuple[float, ...]:
    """The radii the ``certified_accuracy@R`` thresholds need scored."""
    return tuple(float(t.qualifier) for t in thresholds
                 if t.name == "certified_accuracy" and t.qualifier is not None)


# -- the gate ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Threshold:
    """``NAME[@QUALIFIER]=VALUE`` from ``--fail-under`` / ``--fail-over``."""

    name: str
    qualifier: str | None
    value: float
    bound: str  # "under": fail when value < threshold; "over": fail when value > threshold

    @property
    def label(self) -> str:
        return self.name + (f"@{self.qualifier}" if self.qualifier else "")


def parse_threshold(text: str, bound: str = "under") -> Threshold:
    """Parse ``adv_accuracy=0.6`` or ``adv_accuracy@deepfool=0.6`` (qualifier: an attack
    name or an artifact file stem). Raises ParameterError on unknown names or bad numbers."""
    match = re.fullmatch(r"\s*([a-z][a-z0-9_]*)(?:@([^=]+))?\s*=\s*(\S+)\s*", text)
    if not match:
        raise ParameterError(f"threshold {text!r} is not NAME=VALUE (e.g. adv_accuracy=0.6)")
    name, qualifier, value = match.groups()
    metric = lookup(name)
    if metric is None:
        raise ParameterError(f"unknown metric {name!r} in {text!r}; choose one of: "
                             f"{', '.join(gate_names())}")
    if qualifier and metric.qualifier == "RADIUS":
        try:
            radius = float(qualifier)
        except ValueError:
            radius = math.nan
        if not math.isfinite(radius) or radius < 0:
            raise ParameterError(f"threshold {text!r}: {name}@R takes an L2 radius "
                                 f"R >= 0 (e.g. {name}@0.5=0.4), got {qualifier!r}")
        qualifier = f"{radius:g}"
    elif qualifier and metric.qualifier != "ATTACK":
        raise ParameterError(f"{name} is not a per-artifact metric; drop @{qualifier}")
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(f"threshold {text!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ParameterError(f"threshold {text!r} must be a finite number")
    if not metric.low <= number <= metric.high:
        hint = (f"; give {number / 100:g} for {number:g}%"
                if metric.unit == "fraction" and 1 < number <= 100 else "")
        raise ParameterError(f"threshold {text!r}: {name} is {metric.range_text()}{hint}")
    return Threshold(name, qualifier, number, bound)


class GateError(OptionError):
    """A threshold names a metric the evaluation does not give (the command's usage error)."""


def _named(summary: dict, metric: Metric, threshold: Threshold) -> list[dict]:
    """The evaluation entries of ``metric``'s scope that ``threshold`` speaks of: those its
    qualifier names (attack, file stem or path) for a per-artifact metric, else all."""
    return [e for e in summary["artifacts"] if e.get("kind") == metric.scope
            and (metric.qualifier != "ATTACK" or threshold.qualifier is None
                 or threshold.qualifier in (e.get("attack"), e.get("name"), e.get("path")))]


def _radius(metric: Metric, threshold: Threshold) -> float:
    """The radius a RADIUS metric's threshold is read at (0 for other metrics)."""
    return float(threshold.qualifier or 0.0) if metric.qualifier == "RADIUS" else 0.0


def metric_value(summary: dict, threshold: Threshold) -> float:
    """The value a threshold is checked against: its metric's (``metric_registry``) on the
    clean split, or the worst over the artifacts of its scope (those the qualifier names);
    GateError (a ParameterError) when it is not available."""
    metric = lookup(threshold.name)
    assert metric is not None, threshold  # parse_threshold made it
    if metric.scope == "clean":
        value = metric.read(summary["clean"])
    else:
        entries = _named(summary, metric, threshold)
        if not entries and metric.qualifier == "ATTACK" and threshold.qualifier is not None:
            raise GateError(f"{threshold.label}: no given attack artifact has attack or "
                            f"file name {threshold.qualifier!r}")
        value = worst(_read(entries, metric, _radius(metric, threshold)), metric.better)
    if value is None:
        raise GateError(f"{threshold.label} is not available: it needs {metric.needs}")
    return value


def _beyond_the_draws(summary: dict, threshold: Threshold) -> str:
    """For certified accuracy at a radius no certification's n can reach: why it reads 0."""
    if threshold.name != "certified_accuracy" or threshold.qualifier is None:
        return ""
    caps = [(e["largest_certifiable_radius"], e["n"]) for e in summary["artifacts"]
            if e.get("kind") == "certification" and e.get("largest_certifiable_radius")
            is not None]
    radius = float(threshold.qualifier)
    short = [(cap, n) for cap, n in caps if radius > cap]
    if not short:
        return ""
    cap, n = min(short)
    return (f" (n = {n:,} draws certify no radius above {cap:.3f}: this gate cannot pass "
            "at that n; certify with a larger --n)")


def check_thresholds(summary: dict, thresholds: list[Threshold]) -> list[str]:
    """One message per missed threshold (empty when all pass). A NaN value (no successful
    sample, so no robustness or distance) misses every threshold: the gate cannot vouch."""
    missed = []
    for threshold in thresholds:
        value = metric_value(summary, threshold)
        label = threshold.label
        metric = lookup(threshold.name)
        if metric is not None and metric.plain_variant is not None and metric.scope == "clean":
            # A variant other than the plain one is named (loss_sensitivity's softmax).
            variant = metric.variant_of(summary["clean"])
            if variant not in (None, metric.plain_variant):
                label += f" ({variant} variant)"
        if math.isnan(value):
            missed.append(f"{label} is n/a (no successful adversarial sample), "
                          f"required {'>=' if threshold.bound == 'under' else '<='} "
                          f"{threshold.value:g}")
        elif threshold.bound == "under" and value < threshold.value:
            missed.append(f"{label} {value:.4f}{_given_by(summary, threshold, value)} is under "
                          f"{threshold.value:g}" + _beyond_the_draws(summary, threshold))
        elif threshold.bound == "over" and value > threshold.value:
            missed.append(f"{label} {value:.4f}{_given_by(summary, threshold, value)} is over "
                          f"{threshold.value:g}")
    return missed


def _given_by(summary: dict, threshold: Threshold, value: float) -> str:
    """`` (of NAME)``: the artifact whose value missed the threshold, when several could."""
    metric = lookup(threshold.name)
    if metric is None or metric.scope == "clean":
        return ""
    radius = _radius(metric, threshold)
    scored = [(e, metric.read(e, radius)) for e in _named(summary, metric, threshold)]
    scored = [(e, v) for e, v in scored if v is not None]
    names = [e.get("name") or str(e.get("path")) for e, v in scored if v == value]
    return f" (of {names[0]})" if len(scored) > 1 and names else ""


# -- writing ---------------------------------------------------------------------------------
def evaluation_inputs(model_path: PathLike, artifacts: Sequence[PathLike]) -> dict[str, Any]:
    """What an evaluation is derived from, as stored in its artifact (attribute ``inputs``):
    the model's and the artifacts' resolved paths (the artifacts sorted)."""
    return {"model": str(Path(model_path).resolve()),
            "artifacts": sorted(str(Path(a).resolve()) for a in artifacts)}


def check_evaluation_output(path: PathLike, inputs: dict[str, Any], *,
                            overwrite: bool = False) -> None:
    """The rule for an evaluation's ``-o`` that exists: an evaluation of the same ``inputs``
    (``evaluation_inputs``) is a rerun and is replaced; anything else (another model or
    other artifacts, a file that is not an evaluation, an evaluation written before advbench
    recorded its inputs) is refused unless ``overwrite``. Raises OutputError."""
    from advbench.core.files import refuse_existing

    if overwrite or not Path(path).exists():
        return
    try:
        with open_artifact(path, EVALUATION_SCHEMA) as f:
            stored = read_attrs(f).get("inputs")
    except (ArtifactError, OSError):
        refuse_existing(path, overwrite=False, holds=" and is not an evaluation")
    if stored != inputs:
        refuse_existing(path, overwrite=False,
                        holds=" and holds an evaluation of another model or other artifacts")


def write_evaluation(path: PathLike, result: Score, kind: str = "evaluate", *,
                     lock: bool = True, inputs: dict[str, Any] | None = None) -> Path:
    """Write an evaluation (or transfer) artifact: the summary as JSON attrs plus per-sample
    arrays (schema ``advbench.evaluation``, written atomically), holding the output lock
    (``files.output_lock``; OutputError while another run writes ``path``; ``lock`` False:
    the caller holds it already). ``inputs`` (``evaluation_inputs``) is stored so that a
    rerun may replace the file and another evaluation may not (``check_evaluation_output``,
    which the caller applies first)."""
    import contextlib

    from advbench.core.files import output_lock

    attrs: dict[str, Any] = {"kind": kind, "summary": jsonable(result.summary)}
    if inputs is not None:
        attrs["inputs"] = json.dumps(inputs)
    with output_lock(path, "artifact") if lock else contextlib.nullcontext():
        write_arrays(path, EVALUATION_SCHEMA, attrs, result.per_sample)
    return Path(path)
