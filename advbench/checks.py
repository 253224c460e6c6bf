"""Checks of user input shared by every stage (attacks, defenses, metrics): each raises
``ParameterError`` with what was passed and what is expected, never ``assert``."""

from __future__ import annotations

import inspect

import numpy as np

from advbench.errors import ParameterError


def check_range(name: str, value: float, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise ParameterError unless low <= value <= high (bounds optional)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if np.isnan(value):
        raise ParameterError(f"{name} must be a number, got NaN")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ParameterError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ParameterError(f"{name} must be {op} {high}, got {value}")


def check_int(name: str, value: int, *, low: int) -> None:
    """Raise ParameterError unless value is an integer >= low."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ParameterError(f"{name} must be >= {low}, got {value}")


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


def keyword_parameters(cls: type) -> tuple[str, ...]:
    """The keyword-only parameters of ``cls``'s constructor, in order: the hyperparameters of
    an attack or defense, so that its provenance and run key cannot miss one."""
    signature = inspect.signature(getattr(cls, "__init__"))
    return tuple(name for name, p in signature.parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)
