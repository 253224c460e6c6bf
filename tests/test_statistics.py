"""advbench.paper.statistics: paired differences, the percentile bootstrap, verdict rules."""

import numpy as np
import pytest

from advbench.core.errors import ParameterError
from advbench.paper import statistics as st


def test_paired_differences_pair_by_seed_and_skip_missing():
    a = {0: 0.9, 1: 0.8, 2: 0.7, 3: None, 5: 0.5}
    b = {0: 0.5, 1: 0.6, 2: 0.9, 3: 0.1, 4: 0.2}
    assert st.paired_differences(a, b) == pytest.approx({0: 0.4, 1: 0.2, 2: -0.2})
    assert list(st.paired_differences({2: 1.0, 0: 1.0}, {0: 0.0, 2: 0.5})) == [0, 2]
    assert st.paired_differences({0: float("nan")}, {0: 1.0}) == {}


def test_bootstrap_interval_matches_a_direct_percentile_bootstrap():
    values = [0.05, 0.07, 0.02, 0.09, 0.04]
    interval = st.bootstrap_interval(values, resamples=5000, seed=3)
    rng = np.random.default_rng(3)
    x = np.asarray(values)
    means = x[rng.integers(0, 5, size=(5000, 5))].mean(axis=1)
    assert interval.mean == pytest.approx(0.054)
    assert interval.low == pytest.approx(np.quantile(means, 0.025))
    assert interval.high == pytest.approx(np.quantile(means, 0.975))
    assert interval.n == 5 and interval.level == 0.95
    # The mean of a resample lies between the smallest and largest value.
    assert 0.02 <= interval.low < interval.mean < interval.high <= 0.09
    # Fixed seed: the same interval every time.
    assert st.bootstrap_interval(values) == st.bootstrap_interval(values)


def test_bootstrap_interval_of_constant_and_single_values():
    interval = st.bootstrap_interval([0.3] * 5)
    assert (interval.low, interval.mean, interval.high) == pytest.approx((0.3, 0.3, 0.3))
    one = st.bootstrap_interval([0.2])
    assert (one.low, one.high, one.n) == (0.2, 0.2, 1)
    assert st.verdict(one, "greater") == st.INCONCLUSIVE


def test_bootstrap_interval_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    few = st.bootstrap_interval(rng.normal(1.0, 1.0, 5))
    many = st.bootstrap_interval(rng.normal(1.0, 1.0, 500))
    assert many.high - many.low < (few.high - few.low) / 3
    assert many.low < 1.0 < many.high


@pytest.mark.parametrize("values, side, expected", [
    ([0.1, 0.2, 0.15, 0.12, 0.18], "greater", st.REPRODUCED),
    ([0.1, 0.2, 0.15, 0.12, 0.18], "less", st.NOT_REPRODUCED),
    ([-0.1, -0.2, -0.15, -0.12, -0.18], "less", st.REPRODUCED),
    ([-0.1, -0.2, -0.15, -0.12, -0.18], "greater", st.NOT_REPRODUCED),
    ([-0.1, 0.2, -0.15, 0.12, 0.01], "greater", st.INCONCLUSIVE),
    ([-0.1, 0.2, -0.15, 0.12, 0.01], "less", st.INCONCLUSIVE),
    ([-0.3, 0.1, 0.1, 0.1, 0.1], "greater", st.INCONCLUSIVE),  # mean > 0, interval not
])
def test_verdict_rules(values, side, expected):
    assert st.verdict(st.bootstrap_interval(values), side) == expected


@pytest.mark.parametrize("verdicts, expected", [
    ([st.REPRODUCED, st.REPRODUCED], st.REPRODUCED),
    ([st.REPRODUCED, st.INCONCLUSIVE], st.INCONCLUSIVE),
    ([st.REPRODUCED, st.INCONCLUSIVE, st.NOT_REPRODUCED], st.NOT_REPRODUCED),
    ([st.INCONCLUSIVE], st.INCONCLUSIVE),
])
def test_combine(verdicts, expected):
    assert st.combine(verdicts) == expected


def test_compare_pairs_and_judges():
    comparison = st.compare("A - B", st.paired_differences(
        {s: 0.8 + 0.01 * s for s in range(5)}, {s: 0.7 for s in range(5)}), "greater")
    assert comparison.verdict == st.REPRODUCED and comparison.interval.n == 5
    assert comparison.interval.mean == pytest.approx(0.12)
    assert st.compare("none", {}, "greater") is None


@pytest.mark.parametrize("call, message", [
    (lambda: st.bootstrap_interval([]), "a bootstrap interval needs at least one value, got none"),
    (lambda: st.bootstrap_interval([1.0, float("inf")]),
     r"bootstrap values must be finite, got \[1.0, inf\]"),
    (lambda: st.bootstrap_interval([1.0, 2.0], level=1.0),
     r"confidence level must be in \(0, 1\), got 1.0"),
    (lambda: st.bootstrap_interval([1.0, 2.0], resamples=10), "resamples must be >= 100, got 10"),
    (lambda: st.verdict(st.bootstrap_interval([1.0, 2.0]), "above"),
     "side must be one of greater, less, got 'above'"),
    (lambda: st.combine([]), "combine needs at least one verdict, got none"),
])
def test_errors(call, message):
    with pytest.raises(ParameterError, match=f"^{message}$"):
        call()
