"""Confidence bounds of a proportion: Wilson's score interval and the exact Clopper-Pearson
lower bound. The promotion gates judge rates with them, and the shadow report prints them."""

from __future__ import annotations

import math

__all__ = ["clopper_pearson_lower", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0.0, 1.0) when n == 0 (nothing is known)."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def clopper_pearson_lower(successes: int, n: int, confidence: float) -> float:
    """Exact one-sided lower confidence bound of a proportion (0 when successes == 0).

    Used where a gate fails on significance: unlike Wilson's, this bound keeps its nominal
    error rate at the small counts where a rollback is decided.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if successes == 0:
        return 0.0
    alpha = 1.0 - confidence

    def upper_tail(p: float) -> float:  # P(X >= successes | n, p)
        below = 0.0
        log_q = math.log1p(-p)
        for k in range(successes):
            below += math.exp(
                math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                + k * math.log(p) + (n - k) * log_q
            )  # fmt: skip
        return 1.0 - below

    lo, hi = 0.0, successes / n
    for _ in range(60):  # P(X >= x) grows with p: bisect for the p where it equals alpha
        mid = (lo + hi) / 2
        if mid <= 0.0 or upper_tail(mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo
