"""Accuracy-vs-eps curves for FGSM and Random + FGSM (the paper's Figures 3-5).

"Efficient Defenses Against Adversarial Attacks" (Zantedeschi et al. 2017,
https://arxiv.org/abs/1707.06728), sections 4.2 and 4.3. FGSM's direction sign(dJ/dx) does
not depend on eps, so a whole curve costs one gradient per sample (on the source model) and
one forward pass per sample and eps (on each scored model), never one gradient per eps.
White-box: the source is the scored model. Black-box: the direction comes from a source model
and other target models are scored on the resulting images.

A curve artifact (schema ``advbench.curve``) keeps the eps grid and, per target model, the
predicted class of every sample at every eps as compact integers (uint8 for up to 256
classes): 100 eps x 10,000 MNIST images is 1 MB per target instead of 3 GB of images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from advbench import __version__, data
from advbench.attacks import budgets
from advbench.attacks.gradient_descent import GradientDescent
from advbench.attacks.norms import NORMS
from advbench.core.checks import check_int, check_range
from advbench.core.errors import AdvbenchError, ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.data.samples import Samples, check_model_fits
from advbench.models.foreign import model_provenance
from advbench.models.zoo import forward_function
from advbench.run import CURVE_ATTACKS, outputs
from advbench.run.artifacts import (CURVE_SCHEMA, find_artifact, read_arrays, run_artifact_path,
                                    write_arrays)
from advbench.run.runner import batches

# The eps grids of curves (parsed in the TensorFlow-free ``budgets``, kept here by name).
parse_eps = budgets.parse_eps
MAX_EPS_POINTS = budgets.MAX_EPS_POINTS
# Images per forward pass of the sweep: several eps of one batch go through the model at
# once, so small batches still fill the device.
IMAGES_PER_PASS = 2048


# -- the sweep ------------------------------------------------------------------------------
_SWEEP_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sweep_function(model, norm: str):
    """tf.function (x, base, direction, steps (k,), eps (k,) float64) -> int32 predictions
    (k, batch) of the image at each step: clip(base + step * direction) held to the eps ball
    around x (``norms.Norm.hold``, as the attack at that eps holds its output), in one
    forward pass; built once per model and norm."""
    functions = _SWEEP_CACHE.setdefault(model, {})
    if norm not in functions:
        ball = NORMS[norm]

        def sweep(x, base, direction, steps, eps):
            k = tf.shape(steps)[0]
            shape = tf.shape(base)
            scaled = tf.reshape(steps, [-1, 1, 1, 1, 1]) * direction[None]
            images = tf.clip_by_value(base[None] + scaled, 0.0, 1.0)
            flat_shape = tf.concat([[k * shape[0]], shape[1:]], 0)
            flat = ball.hold(tf.reshape(tf.broadcast_to(x[None], tf.shape(images)), flat_shape),
                             tf.reshape(images, flat_shape), tf.repeat(eps, shape[0]))
            predictions = tf.argmax(model(flat, training=False), axis=-1, output_type=tf.int32)
            return tf.reshape(predictions, [k, shape[0]])

        functions[norm] = tf.function(sweep, reduce_retracing=True)
    return functions[norm]


_CURVE_ATTACK_OBJECTS: dict[tuple[str, str, float], GradientDescent] = {}


def curve_attack(attack: str, norm: str, alpha: float) -> GradientDescent:
    """The one-step attack object of a curve (``GradientDescent.line`` walks every eps from
    one gradient per sample), one per (attack, norm, alpha) for the process: its compiled
    functions (one per model) are then reused by every curve instead of traced again."""
    from advbench.attacks.fgsm import FGSM
    from advbench.attacks.rand_fgsm import RandomFGSM

    key = (attack, norm, float(alpha))
    if key not in _CURVE_ATTACK_OBJECTS:
        _CURVE_ATTACK_OBJECTS[key] = (FGSM(norm=norm) if attack == "fgsm"
                                      else RandomFGSM(eps=alpha, alpha=alpha))
    return _CURVE_ATTACK_OBJECTS[key]


def _prediction_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.int32


def sweep(source_model: Model, target_models: list[Model], x: np.ndarray, y: np.ndarray,
          eps: Sequence[float] | np.ndarray, *,
          attack: str = "fgsm", norm: str = "linf", alpha: float = 0.05, seed: int = 0,
          batch_size: int = 128, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Predictions of every target model on FGSM / Random+FGSM images at every eps.

    FGSM: x_adv(eps) = clip(x + eps * d(x)) with d the sign of the source model's loss
    gradient (``norm="l2"``: its unit L2 direction), computed once per sample. Random + FGSM
    (Tramer et al., https://arxiv.org/abs/1705.07204): x_r = clip(x + alpha * sign(N(0, I))),
    x_adv(eps) = clip(x_r + (eps - alpha) * d(x_r)), one gradient per sample at x_r; the noise
    of a batch is the one ``RandomFGSM`` draws with seed ``batch_seed(seed, batch start)``, so
    the curve equals ``advbench attack --attack rand-fgsm`` run at each eps with the same
    seed and batch size. For eps < alpha the budget cannot hold the random step: the image is
    clip(x + eps * sign(noise)), noise only (the paper's Figure 5 note: Gaussian noise there).
    Every image is held to its eps ball exactly in float64, as every attack's output is
    (``norms.Norm.hold``).

    Args:
        source_model: Keras model (logits) whose gradient gives the direction.
        target_models: models scored on the images (include ``source_model`` for white-box).
        x: float32 (n, H, W, C) in [0, 1]; y: int labels (n,).
        eps: sequence of eps values >= 0.
        attack: "fgsm" (default) or "rand-fgsm".
        norm: "linf" (default) or "l2" (fgsm only).
        alpha: random step of rand-fgsm, default 0.05.
        seed: run seed (rand-fgsm), default 0.
        batch_size: samples per gradient batch, default 128.

    Returns:
        {"pred_clean": (targets, n), "pred_adv": (targets, len(eps), n)} compact ints.

    Example:
        >>> out = sweep(model, [model], x, y, parse_eps("0:0.3:0.05"))
        >>> accuracy = (out["pred_adv"] == y).mean(axis=2)  # (1, 7)
    """
    if attack not in CURVE_ATTACKS:
        raise ParameterError(f"curves are computed for {', '.join(CURVE_ATTACKS)}, not "
                             f"{attack!r}; run other attacks at one eps")
    check_range("alpha", alpha, low=0.0)
    try:  # the attack's own norms: fgsm's, rand-fgsm's one
        line: GradientDescent | None = curve_attack(attack, norm, alpha)
    except ParameterError:
        line = None
    if line is None or line.norm != norm:
        raise ParameterError(f"norm must be linf (or l2 for fgsm), got {norm!r}")
    eps = np.asarray(eps, dtype=np.float64)
    if eps.ndim != 1 or eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ParameterError(f"eps must be a non-empty list of finite values >= 0, got {eps}")
    check_int("batch size", batch_size, low=1)
    if not target_models:
        raise ParameterError("give at least one model to score the curve on")
    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(y, dtype=np.int64)
    n = len(x)
    num_classes = max(int(m.output_shape[-1]) for m in target_models)
    dtype = _prediction_dtype(num_classes)
    pred_clean = np.zeros((len(target_models), n), dtype)
    pred_adv = np.zeros((len(target_models), eps.size, n), dtype)
    sweeps = [_sweep_function(m, norm) for m in target_models]
    forwards = [forward_function(m) for m in target_models]
    progress = progress or Progress(quiet=True)
    progress.start(f"{attack} curve", math.ceil(n / batch_size))
    for batch, batch_seed_of in batches(n, batch_size, seed):
        start, stop = batch.start, batch.stop
        xb = tf.constant(x[start:stop])
        yb = labels[start:stop]
        # (base, direction, steps, which eps) groups: each eps is one step along one
        # direction from one base image, drawn as the attack draws it at that eps.
        groups = line.line(source_model, x[start:stop], yb, [float(e) for e in eps],
                           seed=batch_seed_of)
        per_pass = max(1, IMAGES_PER_PASS // (stop - start))
        for t, (sweep_fn, forward) in enumerate(zip(sweeps, forwards)):
            pred_clean[t, start:stop] = forward(xb).numpy().argmax(axis=1)
            for base, direction, steps, where in groups:
                for k in range(0, len(steps), per_pass):
                    rows = where[k:k + per_pass]
                    pred_adv[t, rows, start:stop] = sweep_fn(
                        xb, base, direction, tf.constant(steps[k:k + per_pass].astype(np.float32)),
                        tf.constant(eps[rows], tf.float64)).numpy()
        progress.advance(1, samples=stop - start)
    progress.close()
    return {"pred_clean": pred_clean, "pred_adv": pred_adv}


# -- curve runs and artifacts ---------------------------------------------------------------
@dataclasses.dataclass(kw_only=True)
class CurveRun(Samples):
    """The samples of a curve: a data split slice, as for ``runner.AttackRun``."""


@dataclasses.dataclass
class Curve:
    """A curve artifact read back: accuracy per target per eps, with provenance."""

    path: Path
    attrs: dict[str, Any]
    eps: np.ndarray          # (E,)
    y: np.ndarray            # (n,)
    indices: np.ndarray      # (n,)
    pred_clean: np.ndarray   # (T, n)
    pred_adv: np.ndarray     # (T, E, n)

    @property
    def targets(self) -> list[dict[str, Any]]:
        return list(self.attrs["targets"])

    @property
    def accuracy(self) -> np.ndarray:
        """(T, E) accuracy of each target at each eps."""
        return (self.pred_adv == self.y[None, None]).mean(axis=2)

    @property
    def clean_accuracy(self) -> np.ndarray:
        """(T,) accuracy of each target on the clean samples."""
        return (self.pred_clean == self.y[None]).mean(axis=1)

    def target_index(self, model_hash: str) -> int | None:
        for i, target in enumerate(self.targets):
            if target["hash"] == model_hash:
                return i
        return None

    def summary(self) -> dict[str, Any]:
        """JSON-ready: source, attack, eps and per-target accuracies."""
        accuracy = self.accuracy
        clean = self.clean_accuracy
        return {
            "path": str(self.path), "attack": self.attrs["attack"],
            "attack_params": self.attrs["attack_params"], "source": self.attrs["source"],
            "dataset": self.attrs["dataset"], "split": self.attrs["split"],
            "samples": int(len(self.y)), "eps": [float(e) for e in self.eps],
            "targets": [{**target, "setting": "white-box" if target["hash"]
                         == self.attrs["source"]["hash"] else "black-box",
                         "clean_accuracy": float(clean[i]),
                         "accuracy": [float(a) for a in accuracy[i]]}
                        for i, target in enumerate(self.targets)],
        }


def _model_ref(path, meta: dict) -> dict[str, Any]:
    return {"path": str(path), "hash": meta.get("content_hash", ""),
            "name": meta.get("zoo_name", "") or Path(path).stem,
            "provenance": model_provenance(meta)}


def curve_key(run: CurveRun, attack: str, params: dict, eps: Sequence[float], source_hash: str,
              target_hashes: list[str], indices: np.ndarray) -> str:
    """The run key (``outputs.run_key``) of a curve: what determines its artifact."""
    payload = {
        "attack": attack, "params": params, "eps": [float(e) for e in eps],
        "source": source_hash, "targets": list(target_hashes), "dataset": run.dataset,
        "split": run.split, "seed": run.seed, "batch_size": run.batch_size,
    }
    if run.dataset not in data.DATASETS:
        payload["data_hash"] = data.fingerprint(run.dataset)  # a user's file can change
    return outputs.run_key(payload, indices)


def read_curve(path: PathLike) -> Curve:
    """A curve artifact; ArtifactError if it is not one or is corrupt."""
    attrs, arrays = read_arrays(path, CURVE_SCHEMA)
    missing = [k for k in ("eps", "y", "indices", "pred_clean", "pred_adv") if k not in arrays]
    if missing or "targets" not in attrs or "source" not in attrs:
        raise ArtifactError(f"{path} lacks {', '.join(missing) or 'its target list'}; it is "
                            "incomplete: run the curve again")
    return Curve(Path(path), attrs, arrays["eps"], arrays["y"], arrays["indices"],
                 arrays["pred_clean"], arrays["pred_adv"])


def run_curve(run: CurveRun, source: tuple, targets: list[tuple], eps: Sequence[float], *,
              attack: str = "fgsm", norm: str = "linf", alpha: float = 0.05,
              output: PathLike | None = None, runs_dir: PathLike = "runs", overwrite: bool = False,
              progress: Progress | None = None) -> tuple[Path, bool]:
    """Compute (or reuse) a curve artifact: the direction from ``source``, every target scored.

    Args:
        run: the samples (data set, split, limit, start, seed, batch size, data dir).
        source: (path, model, metadata) of the model giving the direction.
        targets: list of (path, model, metadata) scored on the images; the source among them
            makes its curve white-box.
        eps: eps values (``parse_eps``).
        attack, norm, alpha: as in ``sweep``.
        output: artifact path [default: <runs_dir>/<source stem>-<attack>-curve-<key>.h5].
        runs_dir: where existing curves with the same key are looked for, default "runs".
        overwrite: replace ``output`` when it holds another curve (else ArtifactError).

    Returns:
        (path, reused): reused is True when an existing artifact with the same key was found.
    """
    run.validate()
    x, y, indices = run.load()
    for path, model, meta in [source, *targets]:
        check_model_fits(model, meta, path, x, run.dataset)
    params = {"norm": norm} if attack == "fgsm" else {"alpha": float(alpha)}
    source_ref = _model_ref(source[0], source[2])
    target_refs = [_model_ref(p, m) for p, _, m in targets]
    key = curve_key(run, attack, params, eps, source_ref["hash"],
                    [t["hash"] for t in target_refs], indices)
    if output is None:
        output = run_artifact_path(runs_dir, source[0], attack, key, curve=True)
    output = Path(output)
    claim: dict[str, Any] = dict(schema=CURVE_SCHEMA, key=key, noun="a curve",
                                 kind="a curve artifact")
    with contextlib.suppress(AdvbenchError):  # reuse needs no lock (a read-only runs folder)
        if outputs.read_claim(output, **claim).state == "complete":
            return output, True
    found = find_artifact(runs_dir, CURVE_SCHEMA, key)  # the same curve under another name
    if found is not None:
        return found, True
    # One writer per output: a second run of the same -o waits briefly, then refuses; once
    # it holds the lock, the first run's finished curve is reused.
    with outputs.claim_output(output, what="curve artifact", overwrite=overwrite,
                              **claim) as held:
        if held.state == "complete":
            return output, True
        predictions = sweep(source[1], [m for _, m, _ in targets], x, y, eps, attack=attack,
                            norm=norm, alpha=alpha, seed=run.seed, batch_size=run.batch_size,
                            progress=progress)
        attrs = {
            "key": key, "attack": attack, "attack_params": params, "source": source_ref,
            "targets": target_refs, "dataset": run.dataset,
            "data_hash": data.fingerprint(run.dataset, run.data_dir), "split": run.split,
            "limit": run.limit, "start": run.start, "seed": run.seed,
            "batch_size": run.batch_size, "num_samples": len(x), "complete": True,
            "advbench_version": __version__,
        }
        write_arrays(output, CURVE_SCHEMA, attrs, {
            "eps": np.asarray(eps, dtype=np.float64), "y": y, "indices": indices, **predictions})
        return output, False
