"""Metrics of the paper: accuracy, perturbation norms, empirical robustness, training-set
distance and loss sensitivity.

"Efficient Defenses Against Adversarial Attacks" (Zantedeschi, Nicolae, Rawat, 2017),
https://arxiv.org/abs/1707.06728, section 4.1. Every metric works from arrays (clean images,
adversarial images, success flags) so that it can be recomputed from saved artifacts without
re-running an attack. ``docs/metrics.md`` gives each formula, the samples it is averaged over,
and how it differs from the paper's code and from IBM ART 1.20.1.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

from advbench.core.checks import check_class_labels, check_images, check_int
from advbench.core.errors import AdvbenchError, ParameterError
from advbench.core.ops import per_sample_cross_entropy
from advbench.core.progress import Progress
from advbench.core.types import Model
from advbench.models.gradients import attack_model
from advbench.run import DISTANCE_VARIANTS, SENSITIVITY_VARIANTS, SUCCESS_DEFINITIONS

#: Norms of a perturbation stored per sample in an attack artifact (``perturbation_norms``'
#: default).
PERTURBATION_NORMS = ("l0", "l2", "linf")
#: Every norm ``perturbation_norms`` computes; ``evaluate`` reports them all (L1 for the L1
#: threat model of FAB, FMN, APGD and AutoAttack).
NORMS = ("l0", "l1", "l2", "linf")
#: Norms accepted by ``empirical_robustness`` (L0 for fmn's L0 runs: features changed over
#: the clean image's non-zero features, both counted above ``L0_TOLERANCE``).
ROBUSTNESS_NORMS = ("l0", "l1", "l2", "linf")

# A pixel-channel feature counts as changed in L0 when it moves by more than this: float32
# round-off (~6e-8 on [0, 1]) must not count, any real attack step (>= 1/255 on 8-bit data)
# must.
L0_TOLERANCE = 1e-6

# Largest distance block of nearest_training_distance, in entries (256 MB in float32): the
# training side of a block shrinks below chunk_size when needed, so that memory stays bounded
# (about three blocks live at once) even for a chunk_size larger than the data sets.
_MAX_BLOCK_ENTRIES = 2 ** 26

# Rows per numpy block in the per-sample norm computations: bounds the float64 temporaries
# (4096 x 3072 x 8 bytes = 100 MB on CIFAR-10) whatever the data set size.
_NUMPY_ROWS = 4096


# -- input checks -------------------------------------------------------------------------
def _array(name: str, value, *, dtype=None, min_ndim: int = 1) -> np.ndarray:
    """``value`` as a non-empty numpy array of at least ``min_ndim`` dimensions."""
    try:
        array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise AdvbenchError(f"{name} must be a numeric array, got {type(value).__name__}") \
            from None
    if array.ndim < min_ndim:
        raise AdvbenchError(
            f"{name} must have at least {min_ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise AdvbenchError(f"{name} is empty (shape {array.shape}); pass at least one sample")
    return array


def _finite(name: str, array: np.ndarray) -> np.ndarray:
    """Raise unless every entry is finite (NaN/inf would silently poison a mean)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise AdvbenchError(f"{name} contains {bad} NaN or infinite value(s); expected finite")
    return array


def _images(name: str, value) -> np.ndarray:
    """A finite float batch of shape (n, ...) in [0, 1] (``checks.check_images``)."""
    return check_images(name, value, ndim=None, float32=False)


def _success(value, n: int | None = None) -> np.ndarray:
    """A boolean success mask of shape (n,); accepts bool or 0/1 integers."""
    array = _array("success", value, min_ndim=1)
    if array.ndim != 1:
        raise AdvbenchError(f"success must have shape (n,), got {array.shape}")
    if array.dtype != np.bool_:
        if array.dtype.kind not in "iuf" or not np.isin(array, (0, 1)).all():
            raise AdvbenchError(
                f"success must be booleans (or 0/1), got dtype {array.dtype} with other values")
        array = array.astype(bool)
    if n is not None and array.shape[0] != n:
        raise AdvbenchError(
            f"success has {array.shape[0]} entries but there are {n} samples; pass one per sample")
    return array


def _labels(name: str, value, n: int | None = None) -> np.ndarray:
    """Integer class indices of shape (n,) (``checks.check_class_labels``)."""
    return check_class_labels(name, value, n)


def _same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise AdvbenchError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
                            "they must match")


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


# -- accuracy and success ------------------------------------------------------------------
def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of samples whose predicted class equals the label.

    Args:
        predictions: class indices of shape (n,), or scores (logits or probabilities) of
            shape (n, classes), in which case the argmax is the prediction.
        labels: integer class indices of shape (n,).

    Returns:
        Accuracy in [0, 1] (a fraction, not a percentage).

    Example:
        >>> accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
        0.5
    """
    predictions = _array("predictions", predictions, min_ndim=1)
    if predictions.ndim == 2:
        _finite("predictions", predictions)
        predictions = predictions.argmax(axis=1)
    elif predictions.ndim != 1:
        raise AdvbenchError(
            f"predictions must have shape (n,) or (n, classes), got {predictions.shape}")
    predictions = _labels("predictions", predictions)
    labels = _labels("labels", labels, predictions.shape[0])
    return float(np.mean(predictions == labels))




def attack_success(pred_adv: ArrayLike, pred_clean: ArrayLike, labels: ArrayLike, *,
                   target: ArrayLike | None = None, against: str = "prediction") -> np.ndarray:
    """Per-sample success of an attack, bool (n,).

    Untargeted: ``pred_adv != pred_clean`` (``against="prediction"``, the default, as ART
    and the paper's authors) or ``pred_adv != labels`` (``against="label"``). Targeted
    (``target`` given): ``pred_adv == target``.

    Args:
        pred_adv: int class indices (n,) predicted on the adversarial images.
        pred_clean: int class indices (n,) predicted on the clean images.
        labels: int true labels (n,).
        target: optional int target classes (n,).
        against: "prediction" or "label" (see ``SUCCESS_DEFINITIONS``).

    Raises:
        ParameterError: on an unknown ``against``; AdvbenchError on bad arrays.

    Example:
        >>> attack_success(np.array([1, 2]), np.array([1, 1]), np.array([0, 1]))
        array([False,  True])
    """
    against = _choice("against", against, SUCCESS_DEFINITIONS)
    pred_adv = _labels("pred_adv", pred_adv)
    n = pred_adv.shape[0]
    pred_clean = _labels("pred_clean", pred_clean, n)
    labels = _labels("labels", labels, n)
    if target is not None:
        return pred_adv == _labels("target", target, n)
    return pred_adv != (pred_clean if against == "prediction" else labels)


def attack_success_rate(success: ArrayLike) -> float:
    """Fraction of samples the attack succeeded on.

    Args:
        success: boolean (or 0/1) array of shape (n,).

    Example:
        >>> attack_success_rate(np.array([True, False, True, True]))
        0.75
    """
    return float(np.mean(_success(success)))


def success_counts(pred_adv: ArrayLike, pred_clean: ArrayLike, labels: ArrayLike, *,
                   target: ArrayLike | None = None) -> dict[str, float | int]:
    """Robust accuracy and the success rate over the correctly classified samples, with the
    clean errors counted apart (AutoAttack's convention, Croce and Hein 2020): a rate that a
    model's clean errors can neither cap nor pad.

    Returns a dict:
        robust_accuracy: fraction of all n samples whose adversarial prediction is the label.
        success_rate: among the samples the model classifies correctly, the fraction whose
            adversarial prediction is not the label (untargeted; on these samples the label
            and the clean prediction agree, so both success definitions give it) or is the
            target (targeted); NaN when no sample is classified correctly.
        correct, clean_errors: how many samples the model classifies correctly / not.
        success_rate_errors: among the clean errors, the fraction whose prediction the attack
            moved (untargeted) or made the target (targeted); NaN when there are none.

    Args:
        pred_adv, pred_clean, labels: int arrays (n,) of class indices.
        target: int array (n,) of target classes for a targeted attack, else None.

    Example:
        >>> success_counts(np.array([1, 1, 2]), np.array([0, 1, 2]),
        ...                np.array([0, 1, 0]))["success_rate"]  # 1 of 2 correct fooled
        0.5
    """
    pred_adv = _labels("pred_adv", pred_adv)
    n = len(pred_adv)
    pred_clean = _labels("pred_clean", pred_clean, n)
    labels = _labels("labels", labels, n)
    correct = pred_clean == labels
    on_label = attack_success(pred_adv, pred_clean, labels, target=target, against="label")
    on_prediction = attack_success(pred_adv, pred_clean, labels, target=target,
                                   against="prediction")
    errors = ~correct
    return {
        "robust_accuracy": float(np.mean(pred_adv == labels)),
        "success_rate": float(np.mean(on_label[correct])) if correct.any() else math.nan,
        "correct": int(correct.sum()), "clean_errors": int(errors.sum()),
        "success_rate_errors": (float(np.mean(on_prediction[errors])) if errors.any()
                                else math.nan),
    }


# -- perturbation norms --------------------------------------------------------------------
def perturbation_norms(x: ArrayLike, x_adv: ArrayLike, *, tolerance: float = L0_TOLERANCE,
                       norms: tuple[str, ...] = PERTURBATION_NORMS) -> dict[str, np.ndarray]:
    """Per-sample norms of ``x_adv - x``: L0, L2 and L-inf, or those of ``norms`` (any of
    ``NORMS``: l0, l1, l2, linf).

    L0 counts pixel-channel features (not pixels) changed by more than ``tolerance``. Norms
    are accumulated in float64.

    Args:
        x: clean images, shape (n, ...) (e.g. NHWC).
        x_adv: adversarial images, same shape.
        tolerance: L0 threshold on |x_adv - x|, default 1e-6.
        norms: which norms, a subset of ``NORMS``.

    Returns:
        {norm: float64 (n,)} for each of ``norms``, e.g. {"l0", "l2", "linf"}.

    Raises:
        ParameterError: a norm not in ``NORMS``.

    Example:
        >>> perturbation_norms(np.zeros((1, 2)), np.array([[0.3, -0.4]]))["l2"]
        array([0.5])
    """
    x = _images("x", x)
    x_adv = _images("x_adv", x_adv)
    _same_shape("x", x, "x_adv", x_adv)
    if not (isinstance(tolerance, (int, float, np.floating)) and tolerance >= 0):
        raise ParameterError(f"tolerance must be a number >= 0, got {tolerance!r}")
    unknown = [name for name in norms if name not in NORMS]
    if unknown:
        raise ParameterError(f"norms must be among {', '.join(NORMS)}, got {unknown[0]!r}")
    n = x.shape[0]
    out = {name: np.empty(n, dtype=np.float64) for name in norms}
    for start in range(0, n, _NUMPY_ROWS):
        rows = slice(start, min(start + _NUMPY_ROWS, n))
        diff = (x_adv[rows].reshape(rows.stop - rows.start, -1).astype(np.float64)
                - x[rows].reshape(rows.stop - rows.start, -1).astype(np.float64))
        magnitude = np.abs(diff)
        measures = {"l0": lambda: np.count_nonzero(magnitude > tolerance, axis=1),
                    "l1": lambda: magnitude.sum(axis=1),
                    "l2": lambda: np.sqrt(np.einsum("ij,ij->i", diff, diff)),
                    "linf": lambda: magnitude.max(axis=1)}
        for name in norms:
            out[name][rows] = measures[name]()
    return out


def success_summary(values: ArrayLike, success: ArrayLike) -> dict[str, float | int]:
    """Mean and median of a per-sample quantity over the successful samples.

    NaN-safe: with no successful sample, mean and median are NaN and ``count`` is 0, so the
    caller can report "n/a (0 of n)" rather than a misleading 0.

    Args:
        values: float array (n,), e.g. an L2 norm or a training-set distance per sample.
        success: boolean array (n,).

    Returns:
        {"mean": float, "median": float, "count": int (successful samples), "total": int}.

    Example:
        >>> success_summary(np.array([1.0, 5.0, 3.0]), np.array([True, False, True]))
        {'mean': 2.0, 'median': 2.0, 'count': 2, 'total': 3}
    """
    values = _finite("values", _array("values", values, dtype=np.float64))
    if values.ndim != 1:
        raise AdvbenchError(f"values must have shape (n,), got {values.shape}")
    success = _success(success, values.shape[0])
    selected = values[success]
    if selected.size == 0:
        mean = median = math.nan
    else:
        mean, median = float(np.mean(selected)), float(np.median(selected))
    return {"mean": mean, "median": median, "count": int(selected.size),
            "total": int(values.shape[0])}


def norm_summary(norms: dict[str, np.ndarray], success: ArrayLike) -> dict[str, float | int]:
    """Mean and median of each perturbation norm over the successful samples.

    Failed attacks are left out: their "perturbation" is whatever the attack gave up with and
    would mix two populations. NaN when no sample succeeded (``count`` says so).

    Args:
        norms: the dict returned by ``perturbation_norms`` (any subset of its keys).
        success: boolean array (n,).

    Returns:
        Flat dict: "<norm>_mean", "<norm>_median" for each norm, plus "count" and "total".

    Example:
        >>> norm_summary({"l2": np.array([1.0, 3.0])}, np.array([True, True]))
        {'l2_mean': 2.0, 'l2_median': 2.0, 'count': 2, 'total': 2}
    """
    if not isinstance(norms, dict) or not norms:
        raise AdvbenchError("norms must be a non-empty dict of per-sample arrays, "
                            f"as returned by perturbation_norms; got {type(norms).__name__}")
    out: dict[str, float | int] = {}
    summary: dict[str, float | int] = {}
    for name, values in norms.items():
        try:
            summary = success_summary(values, success)
        except AdvbenchError as error:
            raise AdvbenchError(f"norm {name!r}: {error}") from None
        out[f"{name}_mean"] = summary["mean"]
        out[f"{name}_median"] = summary["median"]
    out["count"] = summary["count"]
    out["total"] = summary["total"]
    return out


# -- empirical robustness ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Robustness:
    """Empirical robustness with the facts needed to read it.

    value: mean of ||x_adv - x||_p / ||x||_p over successful samples; NaN when count is 0.
    norm: the p used ("linf", "l2", "l1" or "l0").
    success_rate: successful samples / all samples.
    count: number of successful samples the mean is over.
    total: number of samples attacked.
    """

    value: float
    norm: str
    success_rate: float
    count: int
    total: int


def _row_norms(flat: np.ndarray, norm: str) -> np.ndarray:
    """Per-row p-norm in float64, for a 2-D float64 array."""
    if norm == "linf":
        return np.abs(flat).max(axis=1)
    if norm == "l1":
        return np.abs(flat).sum(axis=1)
    if norm == "l0":
        return np.count_nonzero(np.abs(flat) > L0_TOLERANCE, axis=1).astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", flat, flat))


def empirical_robustness(x: ArrayLike, x_adv: ArrayLike, success: ArrayLike,
                         norm: str = "linf") -> Robustness:
    """Mean relative size of the minimal perturbation over successfully attacked samples.

    rho = mean over {i : success_i} of ||x_adv_i - x_i||_p / ||x_i||_p (paper eq. 2;
    https://arxiv.org/abs/1707.06728). ``x_adv`` should come from a minimal attack
    (minimal FGSM, DeepFool, C&W). Use ``norm="linf"`` for minimal FGSM, as ART does, and
    ``"l2"`` for DeepFool and C&W.

    Args:
        x: clean images, shape (n, ...).
        x_adv: minimal adversarial images, same shape.
        success: boolean array (n,): which attacks succeeded (only those are averaged).
        norm: "linf" (default), "l2", "l1" or "l0"; numerator and denominator use the same
            p (L0: the features changed by more than ``L0_TOLERANCE`` over those of x above
            it).

    Returns:
        ``Robustness(value, norm, success_rate, count, total)``; value is NaN when nothing
        succeeded (ART returns 0.0 there).

    Raises:
        AdvbenchError: on shape mismatch, NaN, empty input, or a successful sample whose
            clean image has zero norm (the ratio is undefined).

    Example:
        >>> r = empirical_robustness(x, x_adv, success, norm="linf")
        >>> print(f"{r.value:.3f} ({r.norm}, {r.count}/{r.total} successful)")
    """
    norm = _choice("norm", norm, ROBUSTNESS_NORMS)
    x = _images("x", x)
    x_adv = _images("x_adv", x_adv)
    _same_shape("x", x, "x_adv", x_adv)
    success = _success(success, x.shape[0])
    total = int(x.shape[0])
    count = int(success.sum())
    if count == 0:
        return Robustness(value=math.nan, norm=norm, success_rate=0.0, count=0, total=total)
    x_ok = x[success].reshape(count, -1).astype(np.float64)
    delta = x_adv[success].reshape(count, -1).astype(np.float64) - x_ok
    denominator = _row_norms(x_ok, norm)
    if np.any(denominator == 0):
        first = int(np.flatnonzero(success)[np.flatnonzero(denominator == 0)[0]])
        raise AdvbenchError(
            f"x[{first}] has zero {norm} norm, so ||dx||/||x|| is undefined; "
            "drop blank images or mark them unsuccessful")
    value = float(np.mean(_row_norms(delta, norm) / denominator))
    return Robustness(value=value, norm=norm, success_rate=count / total, count=count,
                      total=total)


# -- training-set distance -----------------------------------------------------------------
@tf.function(input_signature=[
    tf.TensorSpec([None, None], tf.float32),  # query chunk, centred, flattened
    tf.TensorSpec([None, None], tf.float32),  # all training images, centred, flattened
    tf.TensorSpec([None], tf.float32),        # their squared norms
    tf.TensorSpec([], tf.int32),              # training rows per block
], reduce_retracing=True)
def _nearest_in_chunks(query, train, train_squared, train_chunk):
    """Index of the nearest training row for each query row, by blocks of training rows.

    Squared distances come from ||a||^2 + ||b||^2 - 2ab (one matrix product per block); only
    a (queries x train_chunk) block exists at a time. No clamp at 0 before the argmin: a clamp
    would turn slightly negative values of near-duplicates into artificial ties (the reported
    distance is recomputed exactly afterwards, so it never sees these values).
    """
    # ||q||^2 is the same for every candidate of a row, so the argmin needs only
    # ||t||^2 - 2 q.t; folding the -2 into the (small) query chunk saves a pass over the block.
    query_scaled = -2.0 * query
    n_train = tf.shape(train)[0]
    n_query = tf.shape(query)[0]
    best = tf.fill([n_query], tf.constant(np.inf, tf.float32))
    best_index = tf.zeros([n_query], tf.int64)

    def body(start, best, best_index):
        stop = tf.minimum(start + train_chunk, n_train)
        partial = (tf.matmul(query_scaled, train[start:stop], transpose_b=True)
                   + train_squared[None, start:stop])
        index = tf.argmin(partial, axis=1, output_type=tf.int64)
        value = tf.gather(partial, index, axis=1, batch_dims=1)
        # Strictly smaller: on exact ties the earlier training image wins, as np.argmin does.
        better = value < best
        best = tf.where(better, value, best)
        best_index = tf.where(better, index + tf.cast(start, tf.int64), best_index)
        return stop, best, best_index

    _, best, best_index = tf.while_loop(
        lambda start, *_: start < n_train, body, (tf.constant(0), best, best_index))
    return best_index


def query_blocks(n: int, chunk_size: int = 2048,
                 shard: tuple[int, int] | None = None) -> list[slice]:
    """The blocks of query rows ``nearest_training_distance`` computes one at a time, in
    order: ``min(chunk_size, n)`` rows each (the last may be shorter). With ``shard=(I, N)``
    only blocks I, I+N, I+2N, ... (none when I >= the number of blocks).

    Example:
        >>> query_blocks(5, 2, shard=(1, 2))
        [slice(2, 4, None)]
    """
    check_int("chunk_size", chunk_size, low=1)
    step = max(1, min(chunk_size, n))
    blocks = [slice(start, min(start + step, n)) for start in range(0, n, step)]
    if shard is None:
        return blocks
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ParameterError(f"shard must be (I, N) with 0 <= I < N, got {shard}")
    return blocks[index::count]


def nearest_training_distance(x_query: ArrayLike, x_train: ArrayLike, *,
                              chunk_size: int = 2048, variant: str = "l2",
                              x_clean: ArrayLike | None = None,
                              query_chunk: int | None = None,
                              shard: tuple[int, int] | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each query image to its nearest training image, and that image's index.

    Exact nearest-neighbour search by chunked matrix products in TensorFlow (runs on the GPU
    when there is one): both the queries and the training set are cut in blocks of
    ``chunk_size`` rows, so memory stays at about 3 * chunk_size^2 * 4 bytes (never more than
    3 * 256 MB: the training side of a block shrinks for very large chunks) plus one float32
    copy of the training set, whatever the data set sizes. Candidates are chosen from the
    float32 expansion ||a||^2 + ||b||^2 - 2ab on data centred on the training mean (centring
    leaves distances unchanged and shrinks the norms, hence the cancellation error); the
    reported distance is then recomputed in float64 from the difference vector to the chosen
    image, so round-off in the expansion does not bias it. Among near-ties (true squared
    distances within float32 round-off of ||a||^2 + ||b||^2, ~1e-5 on MNIST) the chosen index
    may differ from a float64 brute force; the reported distance is then off by at most that
    round-off.

    Args:
        x_query: images to measure (usually adversarial examples), shape (n, ...).
        x_train: training images, shape (m, ...) with the same per-sample shape.
        chunk_size: rows per block on both sides, default 2048 (a 16 MB float32 block).
        query_chunk: query rows per block when other than ``chunk_size`` (smaller blocks
            give a shard a finer unit, at some CPU time).
        variant: "l2" (default): the Euclidean distance ||q - t||_2. "paper": the authors'
            code's quantity, the squared distance ||q - t||_2^2 divided by ||x||_2, where x
            is ``x_clean`` when given (as in their code: the clean image the adversarial came
            from) and ``x_query`` otherwise.
        x_clean: optional clean images, same shape as ``x_query``; only used by "paper".
        shard: ``(I, N)``: compute only the query blocks ``query_blocks(n, query_chunk,
            shard)`` (I, I+N, ... of the whole computation, each with the same rows as
            without ``shard``, so their values are the same bits); the other rows get
            distance NaN and index -1. Default: every row.

    Returns:
        (distances float64 (n,), indices int64 (n,)): the metric value per query and the
        row of ``x_train`` that is nearest. The paper's table value is the mean over
        successful adversarials: ``success_summary(distances, success)["mean"]``.

    Example:
        >>> d, i = nearest_training_distance(x_adv, x_train)
        >>> float(d[success].mean())
    """
    variant = _choice("variant", variant, DISTANCE_VARIANTS)
    check_int("chunk_size", chunk_size, low=1)
    query_rows = chunk_size if query_chunk is None else query_chunk
    check_int("query_chunk", query_rows, low=1)
    x_query = _images("x_query", x_query)
    x_train = _images("x_train", x_train)
    if x_query.shape[1:] != x_train.shape[1:]:
        raise AdvbenchError(
            f"x_query images have shape {x_query.shape[1:]} but x_train images have shape "
            f"{x_train.shape[1:]}; they must match")
    if x_clean is not None:
        if variant != "paper":
            raise ParameterError("x_clean is only used by variant='paper'; drop it or set "
                                 "variant='paper'")
        x_clean = _images("x_clean", x_clean)
        _same_shape("x_query", x_query, "x_clean", x_clean)

    n, m = x_query.shape[0], x_train.shape[0]
    query_flat = x_query.reshape(n, -1)
    train_flat = x_train.reshape(m, -1)
    # Centre on the training mean (float64) before casting: translation-invariant, and
    # smaller norms mean less cancellation in the float32 expansion.
    centre = train_flat.mean(axis=0, dtype=np.float64)
    # Block by block, so no float64 copy of the whole training set is ever made.
    centred = np.empty(train_flat.shape, dtype=np.float32)
    for start in range(0, m, _NUMPY_ROWS):
        centred[start:start + _NUMPY_ROWS] = train_flat[start:start + _NUMPY_ROWS] - centre
    train_centred = tf.convert_to_tensor(centred)
    del centred
    train_squared = tf.reduce_sum(tf.square(train_centred), axis=1)

    indices = np.full(n, -1, dtype=np.int64)
    squared = np.full(n, np.nan, dtype=np.float64)
    # Both from the whole query set, whatever the shard: a block's computation is the same.
    query_step = min(query_rows, n)
    train_chunk = max(1, min(chunk_size, _MAX_BLOCK_ENTRIES // query_step))
    for rows in query_blocks(n, query_rows, shard):
        query = query_flat[rows]
        chunk_indices = _nearest_in_chunks(
            tf.constant((query - centre).astype(np.float32)), train_centred, train_squared,
            tf.constant(train_chunk, tf.int32)).numpy()
        # Exactness fix: the distance to the selected image from its difference vector, in
        # float64 (the float32 difference of two float32 images is exact in float64).
        diff = query.astype(np.float64) - train_flat[chunk_indices].astype(np.float64)
        squared[rows] = np.einsum("ij,ij->i", diff, diff)
        indices[rows] = chunk_indices
    if variant == "l2":
        return np.sqrt(squared), indices
    reference = (x_clean if x_clean is not None else x_query).reshape(n, -1).astype(np.float64)
    reference_norm = np.sqrt(np.einsum("ij,ij->i", reference, reference))
    if shard is not None:  # only this shard's rows must be defined
        reference_norm[np.isnan(squared)] = 1.0
    if np.any(reference_norm == 0):
        first = int(np.flatnonzero(reference_norm == 0)[0])
        name = "x_clean" if x_clean is not None else "x_query"
        raise AdvbenchError(f"{name}[{first}] has zero L2 norm, so the paper's variant "
                            "(squared distance / ||x||_2) is undefined; use variant='l2'")
    return squared / reference_norm, indices


# -- loss sensitivity ----------------------------------------------------------------------
# One compiled gradient-norm function per model and variant, dropped with the model.
_GRADIENT_NORM_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _differentiated_output(logits: tf.Tensor, labels: tf.Tensor, variant: str) -> tf.Tensor:
    """Per-sample scalar whose input gradient the variant measures, shape (batch,)."""
    if variant == "loss":
        return per_sample_cross_entropy(logits, labels)
    # The authors' code: the output of the model's predicted class, not a loss.
    predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
    outputs = tf.nn.softmax(logits) if variant == "softmax" else logits
    return tf.gather(outputs, predicted, axis=1, batch_dims=1)


def _gradient_norm_function(model, variant: str = "loss"):
    """A tf.function (x, labels) -> per-sample input-gradient norms of the variant's output,
    built once per model and variant."""
    per_model = _GRADIENT_NORM_CACHE.setdefault(model, {})
    function = per_model.get(variant)
    if function is None:
        differentiated = attack_model(model)  # same logits, cheaper input gradient

        def gradient_norms(x, labels):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = differentiated(x, training=False)
                # Per-sample values summed: the gradient w.r.t. x_i is that of sample i's own
                # value, with no 1/batch factor, so the result does not depend on the batch.
                total = tf.reduce_sum(_differentiated_output(logits, labels, variant))
            gradient = tape.gradient(total, x)
            flat = tf.reshape(gradient, [tf.shape(gradient)[0], -1])
            return tf.norm(flat, axis=1)

        function = tf.function(gradient_norms, reduce_retracing=True)
        per_model[variant] = function
    return function


def loss_sensitivity_per_sample(model: Model, x: ArrayLike, y: ArrayLike | None, *,
                                batch_size: int = 256, variant: str = "loss",
                                progress: Progress | None = None) -> np.ndarray:
    """Per-sample L2 norm of the input gradient of the cross-entropy loss (or, by
    ``variant``, of the output the paper authors' code differentiated).

    ``variant="loss"`` (default): g_i = ||dJ(theta, x_i, y_i)/dx_i||_2 with J the softmax
    cross-entropy of one sample (https://arxiv.org/abs/1707.06728, section 4.1; Koh and
    Liang 2017). The authors' code (history of IBM's ART, ``src/metrics.py`` /
    ``art/metrics.py::loss_sensitivity``) differentiated no loss: ``"softmax"`` is
    ||d softmax(F(x_i))_c / dx_i||_2 with c the model's predicted class (commit 735ead0c0,
    the code of the paper's Table 3), ``"logit"`` the same for the logit F(x_i)_c (tag 0.1).

    Args:
        model: Keras model mapping float32 images to LOGITS (not probabilities).
        x: images, shape (n, H, W, C).
        y: integer class indices (n,), the true labels for the paper's l_F; not used by the
            "softmax" and "logit" variants (the class is the model's prediction), which take
            None.
        batch_size: samples per gradient call, default 256; the result does not depend on it.
        variant: "loss", "softmax" or "logit" (``SENSITIVITY_VARIANTS``).
        progress: an ``advbench.core.progress.Progress`` that shows the batches (default: none).

    Returns:
        float64 array (n,): nats per unit L2 of input ("loss"), probability per unit
        ("softmax") or logit per unit ("logit").

    Raises:
        ParameterError: an unknown variant, or no labels for "loss".
        AdvbenchError: bad images or labels, or non-finite gradients.

    Example:
        >>> g = loss_sensitivity_per_sample(model, x_test, y_test)
        >>> authors = loss_sensitivity_per_sample(model, x_test, None, variant="softmax")
    """
    check_int("batch_size", batch_size, low=1)
    _choice("sensitivity variant", variant, SENSITIVITY_VARIANTS)
    x = _images("x", x).astype(np.float32, copy=False)
    if y is None:
        if variant == "loss":
            raise ParameterError("the loss variant of loss sensitivity needs the labels y; "
                                 "pass them, or choose variant softmax or logit")
        labels = np.zeros(x.shape[0], dtype=np.int32)  # unused: the class is predicted
    else:
        labels = _labels("y", y, x.shape[0])
    function = _gradient_norm_function(model, variant)
    out = np.empty(x.shape[0], dtype=np.float64)
    starts = range(0, x.shape[0], batch_size)
    if progress is not None:
        progress.start("loss sensitivity", len(starts), unit="batches")
    for start in starts:
        stop = min(start + batch_size, x.shape[0])
        out[start:stop] = function(tf.constant(x[start:stop]),
                                   tf.constant(labels[start:stop])).numpy()
        if progress is not None:
            progress.advance(1, samples=stop - start)
    if progress is not None:
        progress.close()
    if not np.isfinite(out).all():
        raise AdvbenchError("the model gave NaN or infinite loss gradients; check that it "
                            "outputs finite logits")
    return out


def loss_sensitivity(model: Model, x: ArrayLike, y: ArrayLike | None, *, batch_size: int = 256,
                     variant: str = "loss") -> float:
    """Local loss sensitivity l_F: mean over samples of ||dJ(x_i, y_i)/dx_i||_2.

    Paper section 4.1 and Table 3 (https://arxiv.org/abs/1707.06728). The loss is per
    sample, never averaged over the batch, so the value is the same for any ``batch_size``.
    ``variant`` "softmax" or "logit" gives the authors' code's quantity instead (see
    ``loss_sensitivity_per_sample``).

    Args:
        model: Keras model mapping float32 images to LOGITS.
        x: images, shape (n, H, W, C).
        y: integer class indices (n,); None for the "softmax" and "logit" variants.
        batch_size: samples per gradient call, default 256.
        variant: "loss" (default), "softmax" or "logit".

    Returns:
        float.

    Example:
        >>> value = loss_sensitivity(model, x_test[:1000], y_test[:1000], batch_size=500)
    """
    return float(np.mean(loss_sensitivity_per_sample(model, x, y, batch_size=batch_size,
                                                     variant=variant)))


def protocol(attrs: dict[str, Any], samples: int) -> str:
    """What a robust accuracy from an attack artifact must be quoted with (issue 22): the
    attack (and AutoAttack's version), its norm and eps, the images and the seed, from the
    artifact's attributes: "autoattack standard, linf eps=0.3, 1000 images, seed 0"."""
    params = attrs.get("attack_params") or {}
    name = str(attrs.get("attack") or "?")
    if "version" in params:
        name += f" {params['version']}"
    norm = attrs.get("attack_norm") or "?"
    eps = params.get("eps")
    budget = f"{norm} eps={eps:g}" if isinstance(eps, (int, float)) else f"{norm} (minimal)"
    seed = attrs.get("seed")
    return (f"{name}, {budget}, {samples} images"
            + (f", seed {seed}" if seed is not None else ""))
