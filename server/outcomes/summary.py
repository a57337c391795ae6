"""Outcome window summaries that merge across replicas: per-bucket sufficient statistics.

A replica's outcome windows are one-minute buckets aligned to the wall clock (`start = t - t %
bucket_s`) of count, sum and sum of squares, for every report and for the randomized ones. The
statistics the gates and `canaryserve ab` read (server.outcomes.stats.Sample) are sums of
these, so the fleet's window of a series is the replicas' buckets added up, bucket by bucket:
merging is associative and commutative, and three replicas merged give what one recorder that
saw every report holds (exactly for counts and for binary outcomes; a real outcome's sums agree
up to floating-point rounding, since the additions happen in another order).
tests/unit/outcomes/test_summary.py holds the properties.

A series is keyed by (version, name, kind): a name reported with one kind on one replica and
the other kind on another (each replica keeps the kind it saw first) stays two series, never
summed into one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from server.outcomes.stats import Kind, Sample

__all__ = [
    "OutcomeBucket",
    "OutcomeBuckets",
    "SeriesKey",
    "merge_all",
    "merge_outcomes",
    "series_sample",
]


@dataclass(frozen=True)
class OutcomeBucket:
    """One time bucket of one series: every report (n, sum, sum of squares) and the
    randomized ones among them (what gates compare)."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    randomized_n: int = 0
    randomized_total: float = 0.0
    randomized_sq: float = 0.0

    def __add__(self, other: OutcomeBucket) -> OutcomeBucket:
        return OutcomeBucket(
            self.n + other.n,
            self.total + other.total,
            self.total_sq + other.total_sq,
            self.randomized_n + other.randomized_n,
            self.randomized_total + other.randomized_total,
            self.randomized_sq + other.randomized_sq,
        )


class SeriesKey(NamedTuple):
    """One outcome series of a model: which version, which outcome, of which kind."""

    version: str
    name: str
    kind: Kind


#: One model's outcome series, each as its buckets by start (epoch seconds).
OutcomeBuckets = Mapping[SeriesKey, Mapping[float, OutcomeBucket]]


def merge_outcomes(
    a: OutcomeBuckets, b: OutcomeBuckets
) -> dict[SeriesKey, dict[float, OutcomeBucket]]:
    """Two sources' series added up, bucket by bucket (same series, same start)."""
    out = {key: dict(buckets) for key, buckets in a.items()}
    for key, buckets in b.items():
        mine = out.setdefault(key, {})
        for start, bucket in buckets.items():
            mine[start] = mine[start] + bucket if start in mine else bucket
    return out


def merge_all(sources: Iterable[OutcomeBuckets]) -> dict[SeriesKey, dict[float, OutcomeBucket]]:
    merged: dict[SeriesKey, dict[float, OutcomeBucket]] = {}
    for source in sources:
        merged = merge_outcomes(merged, source)
    return merged


def series_sample(
    buckets: Mapping[float, OutcomeBucket],
    kind: Kind,
    *,
    bucket_s: float,
    lo: float,
) -> tuple[Sample, int]:
    """The randomized sample and the count of every report in the buckets that end after
    `lo` (a bucket that overlaps the period counts whole, as OutcomeWindows.series reads)."""
    n = reported = 0
    total = total_sq = 0.0
    for start, b in sorted(buckets.items()):
        if start + bucket_s > lo:
            reported += b.n
            n += b.randomized_n
            total += b.randomized_total
            total_sq += b.randomized_sq
    return Sample(kind, n, total, total_sq), reported
