"""Certified L2 robustness by randomized smoothing (Cohen, Rosenfeld and Kolter, "Certified
Adversarial Robustness via Randomized Smoothing", ICML 2019, https://arxiv.org/abs/1902.02918).

The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) of a base classifier f
is estimated by Monte Carlo. CERTIFY (their Algorithm 1, ``mode="certify"``): n0 noisy draws
choose the top class cA, n fresh draws count it (nA), the one-sided Clopper-Pearson lower
bound pA of P(f(x + noise) = cA) at level 1 - alpha gives the radius sigma * Phi^-1(pA); when
pA < 0.5 it abstains (class -1, radius 0). With probability at least 1 - alpha (over the
draws) g is constant within that L2 radius around x. PREDICT (their Algorithm 2,
``mode="predict"``): n draws, the two-sided binomial test of the top two counts at alpha;
abstain unless it rejects. No radius.

Images are certified in groups across images and draws inside one ``tf.function``: each
forward pass holds at most ``batch_size`` noisy images, so memory is bounded by the batch,
never by n. Noise is added to the [0, 1] image (the model's input, before any preprocessing
layer inside it) and never clipped. Each image draws its noise from a key of the run's seed
and its index in the split, so a shard, a resumed run and a one-process run draw the same
noise. ``certify_split`` owns the run: samples, run key, default path, reuse / resume /
refuse, the output lock and the atomic artifact (``advbench.certification``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from advbench import __version__, data
from advbench.core.checks import check_int, check_range
from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.data.samples import Samples, check_model_fits
from advbench.models.foreign import model_provenance
from advbench.run import outputs
from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays, write_arrays
from advbench.run.runner import device_name
from advbench.run.shards import Shard, check_checkpoint

#: The two procedures of Cohen et al.: CERTIFY (radius) and PREDICT (class only).
MODES = ("certify", "predict")
#: Radii at which ``evaluate`` reports certified accuracy by default ([0, 1] pixel units, L2).
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
#: The noise levels of Cohen et al.'s CIFAR-10 and ImageNet models.
COHEN_SIGMAS = (0.12, 0.25, 0.5, 1.0)


# -- statistics -----------------------------------------------------------------------------
def lower_confidence_bound(n_a: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion:
    the alpha quantile of Beta(nA, n - nA + 1), 0 where nA = 0 (Cohen et al.'s
    ``proportion_confint(nA, n, alpha=2 * alpha, method="beta")[0]``).

    Args:
        n_a: successes, int array or scalar in [0, n].
        n: trials, >= 1.
        alpha: failure probability in (0, 1).
    Returns: float64 array of n_a's shape, in [0, 1).
    """
    from scipy.stats import beta

    n_a = np.asarray(n_a, np.int64)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(alpha, np.maximum(n_a, 1), n - n_a + 1)
    return np.where(n_a > 0, bound, 0.0).astype(np.float64)


def largest_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius ``n`` draws can certify: sigma * Phi^-1(alpha^(1/n)), the bound
    when all n draws are of one class (sigma x 2.46 at n = 1,000 and alpha = 0.001; x 3.81
    at n = 100,000). Certified accuracy above it is 0 whatever the model: a property of n,
    not of the classifier."""
    return float(certified_radius(lower_confidence_bound(n, n, alpha), sigma))


def certified_radius(p_lower: np.ndarray, sigma: float) -> np.ndarray:
    """sigma * Phi^-1(pA) where pA >= 0.5, else 0 (abstain): the L2 radius, in the input's
    [0, 1] pixel units, within which the smoothed classifier is constant."""
    from scipy.stats import norm

    p_lower = np.asarray(p_lower, np.float64)
    return np.where(p_lower >= 0.5, sigma * norm.ppf(np.clip(p_lower, 0.5, 1.0)), 0.0)


def certify_counts(counts0: np.ndarray, counts: np.ndarray, n: int, alpha: float,
                   sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CERTIFY from the counts: (class or -1, pA lower bound, radius) per image.

    counts0: int (N, C) counts of the n0 selection draws; counts: int (N, C) counts of the n
    estimation draws. The class is argmax counts0 (ties: the lowest class)."""
    top = counts0.argmax(axis=1)
    n_a = counts[np.arange(len(top)), top]
    p_lower = lower_confidence_bound(n_a, n, alpha)
    radius = certified_radius(p_lower, sigma)
    return np.where(p_lower >= 0.5, top, -1).astype(np.int64), p_lower, radius


def predict_counts(counts: np.ndarray, alpha: float) -> np.ndarray:
    """PREDICT from the n draws' int (N, C) counts: the top class where the two-sided
    binomial test of the top two counts rejects equal odds at ``alpha``, else -1."""
    from scipy.stats import binomtest

    out = np.full(len(counts), -1, np.int64)
    for i, row in enumerate(counts):
        order = np.argsort(-row, kind="stable")
        n_a, n_b = int(row[order[0]]), int(row[order[1]]) if len(row) > 1 else 0
        if n_a + n_b > 0 and binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
            out[i] = order[0]
    return out


# -- sampling -------------------------------------------------------------------------------
def group_layout(n: int, batch_size: int) -> tuple[int, int]:
    """(images per group, draws per forward pass per image) for n draws per image and at
    most ``batch_size`` noisy images per forward pass. Depends only on n and batch_size,
    so every group of a run (and every shard) chunks its draws the same way."""
    images = max(1, batch_size // n)
    return images, min(n, max(1, batch_size // images))


_COUNTERS: dict[Any, Callable] = {}


def noise_counter(model: Model, num_classes: int) -> Callable:
    """A function (x, keys, phase, draws, chunk, sigma) -> int64 (k, C) class counts of
    ``draws`` copies x + N(0, sigma^2) of each image, ``chunk`` copies per image per forward
    pass, all in one ``tf.function``.

    x: float32 (k, H, W, C) images in [0, 1]; keys: int64 (k, 2) per-image noise keys;
    phase: 0 for selection, 1 for estimation (independent noise). The noise of image i's
    chunk j is ``stateless_normal`` of the key folded with the phase and j: it depends on
    neither the other images of the group nor the group's place in the run."""
    import tensorflow as tf

    cached = _COUNTERS.get((model, num_classes))
    if cached is not None:
        return cached
    shape = list(model.input_shape[1:])

    @tf.function(input_signature=[
        tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None, 2], tf.int64),
        tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64),
        tf.TensorSpec([], tf.float32)])
    def count(x, keys, phase, draws, chunk, sigma):
        k = tf.shape(x, out_type=tf.int64)[0]
        dims = tf.constant(shape, tf.int64)
        steps = (draws + chunk - 1) // chunk

        def body(j, counts):
            def draw(key):
                seed = tf.random.experimental.stateless_fold_in(
                    tf.random.experimental.stateless_fold_in(key, phase), j)
                return tf.random.stateless_normal(tf.concat([[chunk], dims], 0), seed=seed)

            noise = tf.map_fn(draw, keys, fn_output_signature=tf.float32)
            noisy = tf.reshape(x[:, None] + sigma * noise, tf.concat([[-1], dims], 0))
            pred = tf.reshape(tf.argmax(model(noisy, training=False), axis=-1), [k, -1])
            valid = tf.cast(j * chunk + tf.range(chunk, dtype=tf.int64) < draws, tf.int64)
            hits = tf.one_hot(pred, num_classes, dtype=tf.int64) * valid[None, :, None]
            return j + 1, counts + tf.reduce_sum(hits, axis=1)

        _, counts = tf.while_loop(lambda j, _: j < steps, body,
                                  [tf.constant(0, tf.int64),
                                   tf.zeros([k, num_classes], tf.int64)])
        return counts

    def run(x, keys, phase, draws, chunk, sigma):
        return count(tf.constant(x, tf.float32), tf.constant(keys, tf.int64),
                     tf.constant(phase, tf.int64), tf.constant(draws, tf.int64),
                     tf.constant(chunk, tf.int64), tf.constant(sigma, tf.float32)).numpy()

    _COUNTERS[(model, num_classes)] = run
    return run


def noise_keys(seed: int, indices: np.ndarray) -> np.ndarray:
    """int64 (N, 2) per-image noise keys: the run's seed and the image's index in its split."""
    return np.stack([np.full(len(indices), seed, np.int64), np.asarray(indices, np.int64)], 1)


# -- the run --------------------------------------------------------------------------------
@dataclasses.dataclass(kw_only=True)
class CertifyRun(Samples):
    """What to certify: a model artifact, a slice of a data split, and Cohen et al.'s
    parameters. ``batch_size``: noisy images per forward pass (memory), not images."""

    model_path: str
    sigma: float
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    mode: str = "certify"
    batch_size: int = 1000

    def validate(self) -> None:
        """ParameterError unless every parameter can run (Samples' checks, sigma > 0 and
        finite, n0 and n >= 1, alpha in (0, 1), mode one of MODES)."""
        super().validate()
        check_range("sigma", self.sigma, low=0.0, low_inclusive=False)
        check_int("n0", self.n0, low=1)
        check_int("n", self.n, low=1)
        check_range("alpha", self.alpha, low=0.0, high=1.0, low_inclusive=False,
                    high_inclusive=False)
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha,
                "mode": self.mode}


def certify_key(run: CertifyRun, model_hash: str, indices: np.ndarray) -> str:
    """The run key (``outputs.run_key``) of a certification: what determines its artifact."""
    payload = {
        "stage": "certify", **run.params(), "model_hash": model_hash, "dataset": run.dataset,
        "split": run.split, "seed": run.seed, "batch_size": run.batch_size,
    }
    if run.dataset not in data.DATASETS:
        payload["data_hash"] = data.fingerprint(run.dataset)
    return outputs.run_key(payload, indices)


def default_path(runs_dir: PathLike, model_path: PathLike, run: CertifyRun, key: str) -> Path:
    """``<runs_dir>/<model stem>-<mode>-s<sigma>-<first 10 hex digits of the key>.h5``
    (mode: certify or predict)."""
    return Path(runs_dir) / f"{Path(model_path).stem}-{run.mode}-s{run.sigma:g}-{key[:10]}.h5"


def trained_sigma(meta: dict[str, Any]) -> float | None:
    """The GDA sigma a model artifact records (``defense_params``; defenses gda and
    gda-cohen), None if it records none."""
    if meta.get("defense") not in ("gda", "gda-cohen"):
        return None
    params = meta.get("defense_params")
    sigma = params.get("sigma") if isinstance(params, dict) else None
    return float(sigma) if isinstance(sigma, (int, float)) else None


def check_sigma(run: CertifyRun, meta: dict[str, Any], mismatch_ok: bool = False) -> None:
    """ParameterError when the model was trained with GDA at another sigma (certified
    accuracy collapses under a mismatch: locuslab/smoothing#6), unless ``mismatch_ok``."""
    trained = trained_sigma(meta)
    if trained is not None and not mismatch_ok and not np.isclose(trained, run.sigma):
        raise ParameterError(f"model {run.model_path} was trained with GDA at sigma "
                             f"{trained:g} but --sigma is {run.sigma:g}; certify at "
                             f"--sigma {trained:g} or pass --sigma-mismatch-ok")


def describe(run: CertifyRun, output: PathLike, num_images: int) -> str:
    """Every parameter of the run, one line (printed at its start)."""
    return (f"{run.mode} {run.model_path}: {num_images} {data.display_name(run.dataset)} "
            f"{run.split} images (start {run.start}, limit {run.limit}), sigma {run.sigma:g}, "
            f"n0 {run.n0}, n {run.n}, alpha {run.alpha:g}, batch size {run.batch_size}, "
            f"seed {run.seed} -> {output}")


def certify_split(run: CertifyRun, model: Model, model_meta: dict[str, Any],
                  output: PathLike | None = None, *, runs_dir: PathLike = "runs",
                  overwrite: bool = False, resume: bool = True, sigma_mismatch_ok: bool = False,
                  shard: Shard | None = None, checkpoint_seconds: float = 30.0,
                  progress: Progress | None = None,
                  samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Path:
    """Certify (or PREDICT) a data split and write the ``advbench.certification`` artifact.

    ``output`` None: ``default_path`` in ``runs_dir``. A complete artifact of the same run key
    is reused; an interrupted one is resumed (unless ``resume`` is False: ArtifactError); any
    other file at ``output`` is refused unless ``overwrite``. One writer per output (the
    output lock); checkpoints every ``checkpoint_seconds`` and on Ctrl-C. With ``shard``,
    only that shard's groups of images, into its own artifact (merge with ``advbench merge``).
    Returns the artifact path. Raises ParameterError (parameters, sigma mismatch),
    ArtifactError (the model does not take the data, an existing output), OutputError.
    """
    import tensorflow as tf

    run.validate()
    check_sigma(run, model_meta, sigma_mismatch_ok)
    tf.config.experimental.enable_op_determinism()
    progress = progress or Progress(quiet=True)
    x, y, indices = run.load() if samples is None else samples
    check_model_fits(model, model_meta, run.model_path, x, run.dataset)
    key = certify_key(run, model_meta.get("content_hash", ""), indices)
    output = Path(output) if output is not None else default_path(runs_dir, run.model_path,
                                                                  run, key)
    if shard is not None:
        from advbench.run.shards import shard_output

        output = shard_output(output, shard)
    progress.log(describe(run, output, len(x)) + (f" (shard {shard})" if shard else ""))
    with outputs.claim_output(output, what="certification artifact",
                              schema=CERTIFICATION_SCHEMA, key=key, noun="a certification",
                              kind="a certification artifact", overwrite=overwrite,
                              resume=resume, shard=shard, num_samples=len(x)) as claim:
        if claim.state == "complete":
            progress.log(f"{output} is complete already; nothing to do")
            return output
        state = _fresh(len(x))
        if claim.state == "partial":
            check_checkpoint(output, claim.arrays, state)
            state.update({k: v for k, v in claim.arrays.items() if k in state})
            state["wall_time_s"] = float(claim.attrs.get("wall_time_s", 0.0))
            progress.log(f"resuming: {int(state['completed'].sum())} of {len(x)} images done "
                         f"in {output}")
        attrs = _attrs(run, model_meta, key, len(x), shard)
        for name, value in (("y", y), ("indices", indices)):
            state[name] = value
        _certify(run, model, x, y, indices, state, output, attrs, shard=shard,
                 checkpoint_seconds=checkpoint_seconds, progress=progress)
    return output


def certify_shard(model: Any, run: CertifyRun, output: str, shard_index: int,
                  shard_count: int, sigma_mismatch_ok: bool = False) -> str:
    """Certify one shard in this process (what a Ray task of ``certify_with_ray`` runs);
    returns the shard artifact's path (``shard_output`` of ``output``). ``model``: a
    ``run.loading.ModelSource``, opened here as the caller read it."""
    loaded = model.open()
    return str(certify_split(run, loaded.model, loaded.meta, output,
                             sigma_mismatch_ok=sigma_mismatch_ok,
                             shard=Shard(shard_index, shard_count)))


def certify_with_ray(run: CertifyRun, model: Any, output: PathLike | None = None, *,
                     workers: int, runs_dir: PathLike = "runs", overwrite: bool = False,
                     sigma_mismatch_ok: bool = False, retries: int = 3,
                     progress: Progress | None = None,
                     shard_task: Callable[..., str] = certify_shard) -> Path:
    """``certify_split`` as ``workers`` shards, one Ray task each (``run.ray_engine``), merged
    into ``output`` (default ``default_path``): the merged arrays equal a one-process run's,
    bit for bit (each image's noise comes from its own key, ``noise_keys``).

    ``model``: a ``run.loading.LoadedModel``; each task reopens its ``source``, so paths
    must be readable from every node. An existing complete ``output`` of the same run is
    returned as it is; an interrupted one is refused (finish it without Ray). ``shard_task``
    is what a task runs (``certify_shard``'s arguments). Raises as ``certify_split``, and
    ParameterError without Ray or for workers < 1.
    """
    from advbench.run.ray_engine import absolute_data_dir, complete_for_ray, shards_with_ray
    from advbench.run.shards import write_merge

    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    run.validate()
    check_sigma(run, model.meta, sigma_mismatch_ok)
    progress = progress or Progress(quiet=True)
    x, _, indices = run.load()
    check_model_fits(model.model, model.meta, run.model_path, x, run.dataset)
    key = certify_key(run, model.meta.get("content_hash", ""), indices)
    output = Path(output) if output is not None else default_path(runs_dir, run.model_path,
                                                                  run, key)
    progress.log(describe(run, output, len(x)) + f" ({workers} Ray tasks)")
    with outputs.claim_output(output, what="certification artifact",
                              schema=CERTIFICATION_SCHEMA, key=key, noun="a certification",
                              kind="a certification artifact", overwrite=overwrite) as claim:
        if complete_for_ray(claim.state, output, "an interrupted certification", progress):
            return output
        shards = [Shard(i, workers) for i in range(workers)]
        paths = shards_with_ray(shard_task, [
            (model.source, absolute_data_dir(run), str(output.resolve()), shard.index,
             shard.count, sigma_mismatch_ok) for shard in shards], retries=retries)
        write_merge(paths, output)
    return output


def _fresh(n: int) -> dict[str, Any]:
    return {"pred": np.full(n, -1, np.int64), "pa_lower": np.zeros(n, np.float64),
            "count_top": np.zeros(n, np.int64), "radius": np.zeros(n, np.float64),
            "correct": np.zeros(n, bool), "completed": np.zeros(n, bool),
            "counts0": None, "counts": None, "wall_time_s": 0.0}


def _attrs(run: CertifyRun, meta: dict[str, Any], key: str, n: int,
           shard: Shard | None) -> dict[str, Any]:
    attrs = {
        "key": key, **run.params(), "trained_sigma": trained_sigma(meta),
        "model_path": str(run.model_path), "model_hash": meta.get("content_hash", ""),
        "model_name": meta.get("zoo_name", ""), "model_dataset": meta.get("dataset"),
        "model_provenance": model_provenance(meta),
        "dataset": run.dataset, "data_hash": data.fingerprint(run.dataset, run.data_dir),
        "split": run.split, "limit": run.limit, "start": run.start, "seed": run.seed,
        "batch_size": run.batch_size, "num_samples": n, "device": device_name(),
        "noise": "fresh per draw, unclipped, added to the [0, 1] input",
    }
    if shard is not None:
        attrs.update(shard_index=shard.index, shard_count=shard.count)
    return attrs


def _certify(run: CertifyRun, model: Model, x: np.ndarray, y: np.ndarray,
             indices: np.ndarray, state: dict[str, Any], output: Path, attrs: dict[str, Any],
             *, shard: Shard | None, checkpoint_seconds: float,
             progress: Progress) -> None:
    num_classes = int(model.output_shape[-1])
    count = noise_counter(model, num_classes)
    n_images = len(x)
    for name in ("counts0", "counts"):
        if state[name] is None or state[name].shape != (n_images, num_classes):
            state[name] = np.zeros((n_images, num_classes), np.int64)
    keys = noise_keys(run.seed, indices)
    group, chunk = group_layout(run.n, run.batch_size)
    chunk0 = min(run.n0, chunk)  # the selection draws, chunked as the estimation's
    starts = list(range(0, n_images, group))
    if shard is not None:
        starts = shard.batches(starts)
    todo = [s for s in starts if not state["completed"][s:s + group].all()]
    progress.start(run.mode, len(starts))
    progress.advance(len(starts) - len(todo))
    if todo:  # trace the tf.function on one draw, so the first group's time is the rate's
        count(x[:1], keys[:1], 0, 1, 1, run.sigma)
    checkpoints = outputs.Checkpoints(
        lambda complete: _write(output, attrs, state, complete=complete),
        lambda: bool(state["completed"].all()), seconds=checkpoint_seconds, progress=progress)
    with checkpoints:
        for i, start in enumerate(todo):
            sl = slice(start, min(start + group, n_images))
            began = time.perf_counter()
            if run.mode == "certify":
                state["counts0"][sl] = count(x[sl], keys[sl], 0, run.n0, chunk0, run.sigma)
            state["counts"][sl] = count(x[sl], keys[sl], 1, run.n, chunk, run.sigma)
            if run.mode == "certify":
                pred, p_lower, radius = certify_counts(state["counts0"][sl], state["counts"][sl],
                                                       run.n, run.alpha, run.sigma)
                state["pa_lower"][sl], state["radius"][sl] = p_lower, radius
                top = state["counts0"][sl].argmax(axis=1)
            else:
                pred = predict_counts(state["counts"][sl], run.alpha)
                top = state["counts"][sl].argmax(axis=1)
            state["pred"][sl] = pred
            state["count_top"][sl] = state["counts"][sl][np.arange(len(top)), top]
            state["correct"][sl] = pred == y[sl]
            state["completed"][sl] = True
            spent = time.perf_counter() - began
            state["wall_time_s"] += spent
            if i == 0 and len(todo) > 1:
                # Measured on the first group (traced beforehand).
                progress.log(f"estimated time: {spent * len(todo):.0f} s for {len(todo)} "
                             f"groups of {group} image(s) ({spent:.2f} s for the first)")
            done = state["completed"]
            progress.advance(1, samples=sl.stop - sl.start,
                             status=f"accuracy {state['correct'][done].mean():.1%}")
            checkpoints.tick()


def _write(output: Path, attrs: dict, state: dict, *, complete: bool) -> None:
    arrays = {k: v for k, v in state.items() if k != "wall_time_s"}
    write_arrays(output, CERTIFICATION_SCHEMA,
                 {**attrs, "complete": complete, "wall_time_s": round(state["wall_time_s"], 3),
                  "advbench_version": __version__}, arrays)


# -- reading --------------------------------------------------------------------------------
def certification_summary(attrs: dict[str, Any], arrays: dict[str, np.ndarray],
                          radii: tuple[float, ...] = DEFAULT_RADII) -> dict[str, Any]:
    """Certified accuracy at each radius (the fraction of images whose class is correct and
    radius >= r; at r = 0 the smoothed classifier's accuracy), the average certified radius
    (0 for wrong or abstained images, as Cohen et al. and later work report it) and the
    abstention rate, over the completed images of a certification artifact (all of a
    complete one, a shard's own). PREDICT artifacts have no radius: only accuracy and
    abstention."""
    done = np.asarray(arrays["completed"], bool)
    correct = np.asarray(arrays["correct"], bool)[done]
    radius = np.where(correct, np.asarray(arrays["radius"], np.float64)[done], 0.0)
    certify = attrs.get("mode", "certify") == "certify"
    return {
        "mode": attrs.get("mode", "certify"), "sigma": attrs.get("sigma"),
        "n0": attrs.get("n0"), "n": attrs.get("n"), "alpha": attrs.get("alpha"),
        "largest_certifiable_radius": (
            largest_certifiable_radius(attrs["sigma"], attrs["n"], attrs["alpha"])
            if certify and all(attrs.get(k) for k in ("sigma", "n", "alpha")) else None),
        "samples": int(len(correct)),
        "smoothed_accuracy": float(correct.mean()) if len(correct) else None,
        "certified_accuracy": ({f"{r:g}": float(np.mean(correct & (radius >= r)))
                                for r in radii} if certify and len(correct) else {}),
        "average_certified_radius": float(radius.mean()) if certify and len(correct) else None,
        "abstention_rate": float(np.mean(arrays["pred"][done] < 0)) if len(correct) else None,
    }


def read_certification(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of a complete certification artifact; ArtifactError otherwise."""
    attrs, arrays = read_arrays(path, CERTIFICATION_SCHEMA)
    missing = [k for k in ("pred", "radius", "correct", "completed", "y") if k not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks {', '.join(missing)}; it is not written by "
                            "`advbench certify`: certify again")
    if not attrs.get("complete"):
        raise ArtifactError(f"{path} is an interrupted run ({int(arrays['completed'].sum())} of "
                            f"{len(arrays['completed'])} images done); rerun its `advbench "
                            "certify` command to finish it")
    check_certification(path, attrs, arrays)
    return attrs, arrays


def check_certification(where: PathLike, attrs: dict[str, Any],
                        arrays: dict[str, np.ndarray]) -> None:
    """ArtifactError unless a certification's results follow from its noise counts: every
    completed image's counts sum to n (and n0), and its class, pA bound, radius and
    correctness are what CERTIFY (or PREDICT) gives from them at the recorded n, alpha and
    sigma; an edited result (a radius, a class, ``correct``) is refused, naming the field."""
    fix = "the file is damaged or edited: certify again"
    done = arrays["completed"]
    certify = attrs.get("mode", "certify") == "certify"
    counts, counts0 = arrays.get("counts"), arrays.get("counts0")
    chooser = counts0 if certify else counts  # the draws that pick the class
    if counts is None or chooser is None:
        raise ArtifactError(f"{where} lacks its noise counts; {fix}")
    n, n0 = int(attrs["n"]), int(attrs["n0"])
    for name, array, total in (("counts", counts, n), ("counts0", counts0, n0)):
        if array is None or (name == "counts0" and not certify):
            continue
        if len(array) != len(done) or (array[done].sum(axis=1) != total).any():
            raise ArtifactError(f"{where}: {name} does not hold {total} draws per certified "
                                f"image; {fix}")
    if certify:
        pred, p_lower, radius = certify_counts(chooser[done], counts[done], n,
                                               float(attrs["alpha"]), float(attrs["sigma"]))
        found = {"pred": pred, "pa_lower": p_lower, "radius": radius}
    else:
        found = {"pred": predict_counts(counts[done], float(attrs["alpha"]))}
    top = chooser[done].argmax(axis=1)
    found["count_top"] = counts[done][np.arange(len(top)), top]
    found["correct"] = found["pred"] == arrays["y"][done]
    for name, value in found.items():
        stored = arrays.get(name)
        if stored is None or not np.allclose(stored[done], value, rtol=1e-6, atol=1e-9):
            raise ArtifactError(f"{where}: {name} does not follow from the noise counts; {fix}")


def read_certification_run(paths: PathLike | Sequence[PathLike]) -> tuple[
        dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of a complete certification: one artifact, or the shards of one run
    merged in memory (``shards.merge_attack_runs``). ArtifactError when incomplete."""
    from advbench.run.shards import merge_attack_runs

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if len(paths) == 1:
        return read_certification(paths[0])
    attrs, arrays = merge_attack_runs(paths, CERTIFICATION_SCHEMA)
    if not attrs["complete"]:
        raise ArtifactError(f"{', '.join(map(str, paths))} hold {int(arrays['completed'].sum())} "
                            f"of {len(arrays['completed'])} images of their run; give every "
                            "shard or run the missing ones (advbench certify ... --shard I/N)")
    check_certification(", ".join(map(str, paths)), attrs, arrays)
    return attrs, arrays


def certify_json(path: PathLike) -> dict[str, Any]:
    """``advbench certify --json``: the artifact's path and ``certification_summary``."""
    attrs, arrays = read_arrays(path, CERTIFICATION_SCHEMA)
    return {"path": str(path), **certification_summary(attrs, arrays)}


#: Points of the certified-accuracy-vs-radius curve an evaluation entry keeps (for --plot).
CURVE_POINTS = 101


def certification_entry(paths: PathLike | Sequence[PathLike],
                        radii: tuple[float, ...] = DEFAULT_RADII) -> dict[str, Any]:
    """An ``evaluate`` entry for a certification run (one artifact or its shards): kind
    "certification", the certified model, the samples, ``certification_summary`` at
    ``radii``, and ``curve`` {radius, certified_accuracy}: up to CURVE_POINTS radii from 0 to
    5% past the largest certified radius, that radius included (empty for PREDICT)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    attrs, arrays = read_certification_run(paths)
    summary = certification_summary(attrs, arrays, radii)
    curve: dict[str, list[float]] = {"radius": [], "certified_accuracy": []}
    if summary["mode"] == "certify" and len(arrays["correct"]):
        radius = np.where(arrays["correct"], arrays["radius"], -1.0)
        top = max(float(radius.max()), 0.0)
        # Past the largest radius too, so the plot shows the drop to 0 (n caps every radius).
        grid = np.unique(np.append(np.linspace(0.0, 1.05 * top, CURVE_POINTS - 1), top))
        curve = {"radius": [float(r) for r in grid],
                 "certified_accuracy": [float(np.mean(radius >= r)) for r in grid]}
    return {"kind": "certification", "path": str(paths[0]), "name": Path(paths[0]).stem,
            "certified_on": {"path": attrs.get("model_path"), "name": attrs.get("model_name"),
                             "hash": attrs.get("model_hash")},
            "dataset": attrs.get("dataset"), "split": attrs.get("split"), **summary,
            "curve": curve, "wall_time_s": attrs.get("wall_time_s")}
