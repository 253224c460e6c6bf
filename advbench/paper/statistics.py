"""Verdicts that survive seed noise: paired differences over training seeds, percentile
bootstrap confidence intervals of their mean, and the verdict rule of the reproduction report.

A claim such as "model A is more robust than model B" is measured once per training seed s
(A and B both trained with seed s, scored on the same test images), giving paired differences
d_s = metric(A, s) - metric(B, s). The interval is the percentile bootstrap (Efron and
Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13) of the mean of d over seeds:
resample the seeds with replacement, take the mean, and read the (1 - level) / 2 and
(1 + level) / 2 quantiles of those means. With 5 seeds it has 126 distinct resamples, so it is
coarse; it says what the seeds allow, no more.

Verdict: "reproduced" when the whole interval lies on the claim's side of 0, "not reproduced"
when it lies on the other side, "inconclusive" when it contains 0 (or fewer than 2 seeds were
measured). A claim made of several comparisons is reproduced when every part is, not
reproduced when any part is, inconclusive otherwise.

NumPy only (no SciPy dependency): ``numpy.random.Generator`` with a fixed seed, so a report
regenerated from the same artifacts prints the same intervals.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping

import numpy as np

from advbench.core.errors import ParameterError

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
#: The sides a claim can take: the measured difference is claimed above or below 0.
SIDES = ("greater", "less")
RESAMPLES = 10_000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean over seeds and its bootstrap interval, in the units of the values."""

    mean: float
    low: float
    high: float
    n: int          # seeds (values) it rests on
    level: float    # confidence level, e.g. 0.95

    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def paired_differences(a: Mapping[int, float | None], b: Mapping[int, float | None]
                       ) -> dict[int, float]:
    """a[s] - b[s] for every seed s measured (not None, finite) in both, by seed.

    Args:
        a, b: a metric by training seed (e.g. accuracy in [0, 1] of two models).
    Returns:
        {seed: difference}, seeds in increasing order; seeds missing from either side are
        left out, never paired with another seed.
    """
    out = {}
    for seed in sorted(set(a) & set(b)):
        x, y = a[seed], b[seed]
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        out[seed] = float(x) - float(y)
    return out


def bootstrap_interval(values: Iterable[float], *, level: float = LEVEL,
                       resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of ``values`` (one value per seed).

    Args:
        values: finite floats, at least one.
        level: confidence level in (0, 1).
        resamples: bootstrap resamples (>= 100).
        seed: of the ``numpy.random.Generator`` that draws them (fixed: same data, same
            interval).
    Returns:
        ``Interval``; with one value it is that value with low == high (a verdict on it is
        "inconclusive").
    Raises:
        ParameterError: no values, a non-finite value, or a level / resamples out of range.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ParameterError("a bootstrap interval needs at least one value, got none")
    if not np.all(np.isfinite(x)):
        raise ParameterError(f"bootstrap values must be finite, got {x.tolist()}")
    if not 0.0 < level < 1.0:
        raise ParameterError(f"confidence level must be in (0, 1), got {level}")
    if resamples < 100:
        raise ParameterError(f"resamples must be >= 100, got {resamples}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, mean, mean, 1, level)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return Interval(mean, float(low), float(high), int(x.size), level)


def verdict(interval: Interval, side: str) -> str:
    """The verdict on a claim that the difference is above 0 (``side="greater"``) or below 0
    (``"less"``): reproduced, not reproduced or inconclusive (interval contains 0, or one
    seed). Raises ParameterError for another side."""
    if side not in SIDES:
        raise ParameterError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if interval.n < 2 or interval.contains_zero():
        return INCONCLUSIVE
    above = interval.low > 0.0
    return REPRODUCED if above == (side == "greater") else NOT_REPRODUCED


def combine(verdicts: Iterable[str]) -> str:
    """One verdict for a claim made of several comparisons: reproduced if all are, not
    reproduced if any is, else inconclusive. ParameterError for no verdicts."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ParameterError("combine needs at least one verdict, got none")
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One measured part of a claim: a label, the per-seed differences, their interval, the
    side the claim takes and the verdict."""

    label: str
    differences: dict[int, float]
    interval: Interval
    side: str
    verdict: str


def compare(label: str, differences: Mapping[int, float], side: str) -> Comparison | None:
    """The ``Comparison`` of per-seed ``differences`` (None when no seed measured it)."""
    if not differences:
        return None
    interval = bootstrap_interval(differences.values())
    return Comparison(label, dict(differences), interval, side, verdict(interval, side))
