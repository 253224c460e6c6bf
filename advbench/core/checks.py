"""Checks of user input shared by every stage (attacks, defenses, metrics): each raises
``ParameterError`` with what was passed and what is expected, never ``assert``."""

from __future__ import annotations


import numpy as np
from numpy.typing import ArrayLike

from advbench.core.errors import ParameterError


#: Largest integer an iteration count, batch size or sample count may take: TensorFlow loop
#: counters and tensor sizes are int32, and a larger value would wrap silently there (pgd
#: --steps 2**32 + 2 ran 2 steps while its artifact recorded the huge value).
MAX_INT32 = 2 ** 31 - 1
#: Seeds are handed to NumPy's and Python's generators and TensorFlow's stateless ops, the
#: strictest of which (numpy.random.seed, used by keras.utils.set_random_seed) takes
#: [0, 2**32).
SEED_LIMIT = 2 ** 32
#: C&W's binary search multiplies c by 10 per step without success: 30 steps from an initial
#: c of at most 1e6 stay finite in float32 (< 3.4e38); more cannot help (2**40 ran for ever).
MAX_SEARCH_STEPS = 30
MAX_INITIAL_CONST = 1e6
#: VAT's power iterations converge in one or two (the paper and ART use 1); 2**32 + 1 ran
#: until killed.
MAX_POWER_ITERATIONS = 100
#: GDA's noisy copies per image per epoch (the paper: 10): each epoch holds copies + 1 index
#: pairs per training image, so 1e9 exhausted memory; 100 on 60,000 images is 6 million.
MAX_GDA_COPIES = 100
#: Minimal FGSM's grid points (eps_max / eps_step): 1e-5 steps up to 1. Beyond that the grid
#: alone (accumulated in Python, as ART does) takes minutes and gigabytes (eps_step 1e-9).
MAX_GRID_POINTS = 100_000


def check_range(name: str, value: float, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise ParameterError unless value is a finite number with low <= value <= high (bounds
    optional). NaN and infinities are refused whatever the bounds: an infinite learning rate
    or noise level trains a model of NaN weights without any other error."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if np.isnan(value):
        raise ParameterError(f"{name} must be a number, got NaN")
    if not np.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ParameterError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ParameterError(f"{name} must be {op} {high}, got {value}")


def check_int(name: str, value: int, *, low: int, high: int = MAX_INT32) -> None:
    """Raise ParameterError unless value is an integer with low <= value <= high (default
    high: ``MAX_INT32``, what TensorFlow's int32 counters hold)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ParameterError(f"{name} must be >= {low}, got {value}")
    if value > high:
        raise ParameterError(f"{name} must be <= {high}, got {value}")


def check_seed(seed: int, name: str = "seed") -> None:
    """Raise ParameterError unless seed is an integer in [0, 2**32) (``SEED_LIMIT``)."""
    check_int(name, seed, low=0, high=SEED_LIMIT - 1)


def check_images(name: str, value: ArrayLike, *, ndim: int | None = 4, min_ndim: int = 2,
                 float32: bool = True) -> np.ndarray:
    """An image batch as float32, or ParameterError saying what to change.

    The one validator of image inputs of the Python API (attacks and metrics), mirroring what
    the CLI's data loading guarantees: a non-empty real array of ``ndim`` dimensions (attacks:
    (batch, height, width, channels)) or, with ``ndim=None``, at least ``min_ndim`` (metrics
    take flattened (n, d) batches too), finite, in [0, 1]. With ``float32`` (attacks), float64
    and float16 are converted to float32 (a change under 6e-8 on [0, 1], below any attack
    step); metrics keep the float dtype given, for exact hand values. Integer and bool arrays
    are refused, since 8-bit pixels in [0, 255] passed as-is would be clipped to nonsense.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a numeric array, got {type(value).__name__}") \
            from None
    if array.dtype.kind in "iub":
        raise ParameterError(
            f"{name} has dtype {array.dtype}; images must be floats in [0, 1]: for 8-bit pixels "
            f"pass {name}.astype('float32') / 255")
    if array.dtype.kind != "f":
        raise ParameterError(f"{name} must hold real numbers in [0, 1], got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ParameterError(
            f"{name} must have shape (batch, height, width, channels), got shape {array.shape}; "
            "for one image pass image[None]")
    if array.ndim < min_ndim:
        raise ParameterError(
            f"{name} must have shape (n, ...) with at least {min_ndim} dimensions, got shape "
            f"{array.shape}")
    if array.size == 0:
        raise ParameterError(f"{name} is empty (shape {array.shape}); pass at least one sample")
    if float32:
        array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise ParameterError(f"{name} contains {bad} NaN or infinite value(s); expected finite "
                             "values in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ParameterError(
            f"{name} must be in [0, 1], got values from {low:g} to {high:g}; scale the images "
            "to [0, 1] (8-bit pixels: divide by 255)")
    return array


def check_class_labels(name: str, value: ArrayLike, n: int | None = None,
                       num_classes: int | None = None) -> np.ndarray:
    """Class indices as int64 of shape (n,), or ParameterError saying what to change: one-hot
    (n, classes) and column (n, 1) labels are refused with the call that fixes them, as are
    non-integer values, negative ones and, given ``num_classes``, ones >= num_classes."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an array of class indices, got "
                             f"{type(value).__name__}") from None
    if array.ndim == 2 and array.shape[1] == 1:
        raise ParameterError(f"{name} must have shape (n,), got shape {array.shape}; pass "
                             f"{name}.ravel()")
    if array.ndim == 2:
        raise ParameterError(f"{name} must be class indices of shape (n,), got shape "
                             f"{array.shape}; for one-hot labels pass {name}.argmax(axis=1)")
    if array.ndim != 1:
        raise ParameterError(f"{name} must be class indices of shape (n,), got shape "
                             f"{array.shape}")
    if array.size == 0:
        raise ParameterError(f"{name} is empty (shape {array.shape}); pass at least one sample")
    if array.dtype.kind not in "iu":
        if array.dtype.kind != "f" or not np.isfinite(array).all() \
                or not np.all(array == np.round(array)):
            raise ParameterError(f"{name} must be integer class indices, got dtype {array.dtype}")
    if num_classes is not None:
        check_labels(array, num_classes, name)
    elif array.min() < 0:
        raise ParameterError(f"{name} must be >= 0, got {array.min()}")
    if n is not None and array.shape[0] != n:
        raise ParameterError(f"{name} has {array.shape[0]} entries but expected {n}; "
                             "pass one label per sample")
    return array.astype(np.int64)


def check_labels(labels: np.ndarray, num_classes: int, name: str = "y") -> None:
    """Raise ParameterError unless every label is a class index of the model."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ParameterError(
            f"{name} must hold class indices in [0, {num_classes}) for this model's "
            f"{num_classes} outputs, got values from {labels.min()} to {labels.max()}"
        )


def check_targets(target: np.ndarray, batch: int, num_classes: int | None) -> np.ndarray:
    """Target classes as int64, one per image: shape (batch,), integer values in
    [0, num_classes) (no upper bound when ``num_classes`` is None); ParameterError otherwise."""
    if target.shape != (batch,):
        raise ParameterError(
            f"target must have shape ({batch},), one class per image, got {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        if not np.issubdtype(target.dtype, np.floating) or np.any(target != np.round(target)):
            raise ParameterError(f"target must hold integer class labels, got {target.dtype}")
    target = target.astype(np.int64)
    high = "" if num_classes is None else f" and < {num_classes}"
    if np.any(target < 0) or (num_classes is not None and np.any(target >= num_classes)):
        raise ParameterError(
            f"target classes must be >= 0{high}, got values from {target.min()} to "
            f"{target.max()}")
    return target

