"""Outcome statistics: known values, and the properties the gates lean on."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.outcomes.stats import Sample, difference, interval, lift, t_quantile


def binary(successes: int, n: int) -> Sample:
    return Sample("binary", n, successes, successes)


def real(values: list[float]) -> Sample:
    return Sample("real", len(values), sum(values), sum(v * v for v in values))


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [  # Student's t tables
        (0.95, 1, 6.3138),
        (0.975, 1, 12.7062),
        (0.95, 5, 2.0150),
        (0.975, 10, 2.2281),
        (0.95, 30, 1.6973),
        (0.99, 20, 2.5280),
        (0.05, 10, -1.8125),
        (0.5, 7, 0.0),
    ],
)
def test_t_quantile_matches_the_tables(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_tends_to_the_normal_one() -> None:
    z = NormalDist().inv_cdf(0.95)
    assert t_quantile(0.95, 1e6) == pytest.approx(z, abs=1e-4)
    assert t_quantile(0.95, math.inf) == z


@given(st.floats(0.51, 0.999), st.floats(1.0, 500.0))
def test_t_quantile_falls_with_the_degrees_of_freedom(p: float, df: float) -> None:
    assert t_quantile(p, df) >= t_quantile(p, df * 2) - 1e-9 >= NormalDist().inv_cdf(p) - 1e-6


def test_newcombe_bounds_of_a_known_case() -> None:
    """Newcombe (1998), table II, example (a): 56/70 vs 48/80, 95 % two-sided: 0.0524 to
    0.3339 (the one-sided bounds at 0.975 make that two-sided interval)."""
    d = difference(binary(48, 80), binary(56, 70), 0.975)
    assert d is not None
    assert d.estimate == pytest.approx(0.2)
    assert (d.lower, d.upper) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))


def test_welch_bounds_of_a_known_case() -> None:
    """Means 20 (sd 2, n 10) and 22 (sd 3, n 12): Welch df 19.14, t(0.975) 2.092, se 1.0801."""
    a = Sample("real", 10, 200.0, 10 * 400 + 9 * 4)
    b = Sample("real", 12, 264.0, 12 * 484 + 11 * 9)
    d = difference(a, b, 0.975)
    assert d is not None and d.estimate == pytest.approx(2.0)
    half = 2.0922 * math.sqrt(4 / 10 + 9 / 12)
    assert (d.lower, d.upper) == (
        pytest.approx(2 - half, abs=2e-3),
        pytest.approx(2 + half, abs=2e-3),
    )


def test_too_little_data_gives_no_bounds() -> None:
    assert difference(binary(0, 0), binary(3, 10), 0.95) is None
    assert difference(real([1.0]), real([1.0, 2.0]), 0.95) is None
    assert interval(binary(0, 0), 0.95) is None
    assert interval(real([3.0]), 0.95) is None
    assert lift(binary(0, 100), binary(5, 100), 0.95) is None  # stable's rate is 0


def test_kinds_do_not_mix() -> None:
    with pytest.raises(ValueError, match="binary"):
        difference(binary(1, 2), real([1.0, 2.0]), 0.95)


def test_lift_of_a_known_case() -> None:
    got = lift(binary(100, 1000), binary(80, 1000), 0.95)
    assert got is not None
    estimate, lo, hi = got
    assert estimate == pytest.approx(-0.2)
    assert lo < estimate < hi
    # the delta method on log(0.8): se = sqrt(0.9/100 + 0.92/80) * sqrt(1000/999)
    se = math.sqrt((0.9 / 100 + 0.92 / 80) * 1000 / 999)
    assert hi == pytest.approx(0.8 * math.exp(1.959964 * se) - 1, abs=1e-4)


counts = st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(counts, counts, st.floats(0.6, 0.99))
def test_binary_bounds_hold_the_estimate_and_widen_with_confidence(
    a: tuple[int, int], b: tuple[int, int], confidence: float
) -> None:
    s, c = binary(*a), binary(*b)
    d = difference(s, c, confidence)
    wider = difference(s, c, min(0.999, confidence + 0.009))
    assert d is not None and wider is not None
    assert -1.0 <= d.lower <= d.estimate <= d.upper <= 1.0
    assert wider.lower <= d.lower + 1e-12 and wider.upper >= d.upper - 1e-12


@given(counts, counts)
def test_swapping_the_versions_mirrors_the_bounds(a: tuple[int, int], b: tuple[int, int]) -> None:
    d, m = difference(binary(*a), binary(*b), 0.95), difference(binary(*b), binary(*a), 0.95)
    assert d is not None and m is not None
    assert (m.lower, m.upper) == (pytest.approx(-d.upper), pytest.approx(-d.lower))


@given(
    st.lists(st.floats(-100, 100), min_size=2, max_size=40),
    st.lists(st.floats(-100, 100), min_size=2, max_size=40),
    st.floats(-50, 50),
)
def test_welch_bounds_shift_with_the_values(a: list[float], b: list[float], shift: float) -> None:
    d = difference(real(a), real(b), 0.95)
    moved = difference(real(a), real([v + shift for v in b]), 0.95)
    assert d is not None and moved is not None
    assert d.lower <= d.estimate + 1e-9 and d.estimate <= d.upper + 1e-9
    assert moved.estimate == pytest.approx(d.estimate + shift, abs=1e-6)
    assert moved.upper - moved.lower == pytest.approx(d.upper - d.lower, rel=1e-4, abs=1e-4)


@settings(deadline=None, max_examples=20)
@given(st.integers(0, 2**32 - 1))
def test_the_one_sided_bound_keeps_its_level(seed: int) -> None:
    """Equal rates, 400 draws each: the 95 % lower bound of candidate - stable lies above the
    true difference (0) in about 5 % of samples, never far more (checked over 400 samples)."""
    rng = random.Random(seed)
    misses = 0
    for _ in range(400):
        s = sum(rng.random() < 0.1 for _ in range(400))
        c = sum(rng.random() < 0.1 for _ in range(400))
        d = difference(binary(s, 400), binary(c, 400), 0.95)
        assert d is not None
        misses += d.lower > 0
    assert misses <= 0.05 * 400 + 3 * math.sqrt(400 * 0.05 * 0.95)
