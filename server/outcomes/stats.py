"""Statistics of outcome samples: a version's mean (or rate) with its interval, and the
difference between two versions with one-sided bounds — Newcombe's hybrid score bounds for
binary outcomes, Welch's t bounds for real-valued ones — and the relative lift.

Pure functions over sufficient statistics (count, sum, sum of squares); no clock, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from server.intervals import wilson_interval

__all__ = [
    "Difference",
    "Kind",
    "Sample",
    "difference",
    "interval",
    "lift",
    "t_quantile",
    "uniform_confidence",
]

#: An outcome's kind: "binary" (a success or not: a click, a conversion) or "real" (a value).
Kind = str
BINARY = "binary"
REAL = "real"


@dataclass(frozen=True)
class Sample:
    """One version's observations of one outcome: n, the sum and the sum of squares (for a
    binary outcome, the sum is the number of successes)."""

    kind: Kind
    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def __add__(self, other: Sample) -> Sample:
        """Both samples' observations together (the same outcome, from two sources)."""
        if other.kind != self.kind:
            raise ValueError(f"cannot add a {other.kind} sample to a {self.kind} one")
        return Sample(
            self.kind, self.n + other.n, self.total + other.total, self.total_sq + other.total_sq
        )

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1 in the denominator); None below two observations."""
        if self.n < 2:
            return None
        if self.kind == BINARY:
            p = self.total / self.n
            return p * (1 - p) * self.n / (self.n - 1)
        # Sums of squares lose digits when the mean dwarfs the spread; outcome values (revenue,
        # ratings, accuracy) are not that kind of data, and a negative result is clipped.
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))


def _two_sided_z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def interval(sample: Sample, confidence: float) -> tuple[float, float] | None:
    """A two-sided interval of the mean at `confidence`: Wilson's for a rate, Student's t for
    a mean; None when there is too little data (no observation, or one real value)."""
    if sample.kind == BINARY:
        if sample.n == 0:
            return None
        return wilson_interval(round(sample.total), sample.n, _two_sided_z(confidence))
    var = sample.variance
    if var is None:
        return None
    mean = sample.total / sample.n
    half = t_quantile(0.5 + confidence / 2, sample.n - 1) * math.sqrt(var / sample.n)
    return mean - half, mean + half


@dataclass(frozen=True)
class Difference:
    """candidate - stable: the estimate and its lower and upper bounds, each one-sided at the
    confidence asked for (together, a two-sided interval at 2 x confidence - 1)."""

    estimate: float
    lower: float
    upper: float


def difference(stable: Sample, candidate: Sample, confidence: float) -> Difference | None:
    """Bounds of candidate's mean minus stable's; None when either has too little data."""
    if stable.kind != candidate.kind:
        raise ValueError(f"cannot compare a {stable.kind} outcome with a {candidate.kind} one")
    if stable.kind == BINARY:
        return _newcombe(stable, candidate, confidence)
    return _welch(stable, candidate, confidence)


def _newcombe(stable: Sample, candidate: Sample, confidence: float) -> Difference | None:
    """Newcombe's hybrid score bounds (his method 10) from Wilson's bounds of each rate: they
    keep close to their nominal level at small counts and rates near 0 or 1, where the Wald
    interval does not."""
    if stable.n == 0 or candidate.n == 0:
        return None
    z = NormalDist().inv_cdf(confidence)
    ps, pc = stable.total / stable.n, candidate.total / candidate.n
    ls, us = wilson_interval(round(stable.total), stable.n, z)
    lc, uc = wilson_interval(round(candidate.total), candidate.n, z)
    d = pc - ps
    lower, upper = d - math.hypot(pc - lc, us - ps), d + math.hypot(uc - pc, ps - ls)
    return Difference(d, max(-1.0, lower), min(1.0, upper))  # rounding may step past 1


def _welch(stable: Sample, candidate: Sample, confidence: float) -> Difference | None:
    """Welch's bounds: Student's t with the Welch-Satterthwaite degrees of freedom, which do
    not assume equal variances."""
    vs, vc = stable.variance, candidate.variance
    if vs is None or vc is None:
        return None
    d = candidate.total / candidate.n - stable.total / stable.n
    a, b = vs / stable.n, vc / candidate.n
    se = math.sqrt(a + b)
    if se == 0.0:
        return Difference(d, d, d)
    spread = a * a / (stable.n - 1) + b * b / (candidate.n - 1)
    df = (a + b) ** 2 / spread if spread > 0 else math.inf  # tiny variances underflow
    half = t_quantile(confidence, df) * se
    return Difference(d, d - half, d + half)


def uniform_confidence(n: int, tuned_n: int, confidence: float) -> float:
    """The confidence at which a fixed-sample bound is as wide as a time-uniform one: a bound
    that holds at every sample size at once with probability `confidence`, however often it
    is looked at. It is the normal-mixture boundary of Howard et al. (2021, "Time-uniform,
    nonparametric, nonasymptotic confidence sequences"): in standard errors,
    sqrt((1 + m/n) ln((1 + n/m) / alpha^2)), tightest near n = m = `tuned_n`. A promotion
    gate looks again every interval; a fixed 95 % bound looked at 50 times would be crossed
    by chance far more often than 5 % of the time."""
    if n < 1 or tuned_n < 1:
        raise ValueError(f"need n >= 1 and tuned_n >= 1, got {n} and {tuned_n}")
    alpha = 1.0 - confidence
    ratio = n / tuned_n
    k = math.sqrt((1 + 1 / ratio) * math.log((1 + ratio) / (alpha * alpha)))
    return NormalDist().cdf(k)


def lift(stable: Sample, candidate: Sample, confidence: float) -> tuple[float, float, float] | None:
    """candidate / stable - 1 with a two-sided interval at `confidence` (the delta method on
    the log of the ratio); None when a mean is not positive or there is too little data."""
    if stable.n < 2 or candidate.n < 2 or not stable.total > 0 or not candidate.total > 0:
        return None
    ms, mc = stable.total / stable.n, candidate.total / candidate.n
    vs, vc = stable.variance, candidate.variance
    assert vs is not None and vc is not None
    se = math.sqrt(vs / (stable.n * ms * ms) + vc / (candidate.n * mc * mc))
    log_ratio, half = math.log(mc / ms), _two_sided_z(confidence) * se
    return mc / ms - 1, math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (df > 0), by bisection on
    its distribution function; the normal quantile when df is infinite."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"need 0 < p < 1, got {p}")
    if not df > 0:
        raise ValueError(f"need df > 0, got {df}")
    if math.isinf(df):
        return NormalDist().inv_cdf(p)
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t²)."""
    return 1.0 - 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f / a
