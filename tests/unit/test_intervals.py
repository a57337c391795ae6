"""Confidence bounds of a proportion: Wilson's score interval and the Clopper-Pearson bound."""

from __future__ import annotations

import pytest

from server.intervals import clopper_pearson_lower, wilson_interval


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 0, 0.0, 1.0),
        (5, 100, 0.0215, 0.1118),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_known_values(successes: int, n: int, low: float, high: float) -> None:
    """Wilson's interval matches published values."""
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


@pytest.mark.parametrize(
    ("successes", "n", "confidence", "low"),
    [
        (1, 1, 0.95, 0.05),  # the lower bound p with p^1 = alpha
        (10, 10, 0.95, 0.05 ** (1 / 10)),  # all successes: p^n = alpha
        (5, 5, 0.99, 0.01 ** (1 / 5)),
    ],
)
def test_clopper_pearson_lower_known_values(
    successes: int, n: int, confidence: float, low: float
) -> None:
    assert clopper_pearson_lower(successes, n, confidence) == pytest.approx(low, abs=1e-9)


def test_clopper_pearson_lower_is_zero_without_successes_and_below_the_rate() -> None:
    assert clopper_pearson_lower(0, 100, 0.95) == 0.0
    for successes, n in [(1, 100), (20, 2000), (150, 150), (8, 150)]:
        low = clopper_pearson_lower(successes, n, 0.95)
        assert 0.0 < low <= successes / n
        assert low <= wilson_interval(successes, n, z=1.645)[1]


def test_clopper_pearson_lower_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        clopper_pearson_lower(3, 2, 0.95)
