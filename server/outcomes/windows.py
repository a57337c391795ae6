"""Per-version rolling windows of reported outcomes: for each (model, version, outcome name),
time buckets of count, sum and sum of squares — for a binary outcome, trials and successes.

Outcomes land in the bucket of the time they are reported. Each series keeps two sets of
sums: every outcome, and those of randomized assignments only (`Served.randomized`), which
are the ones a gate may compare. An outcome name keeps the kind it was first reported with.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from server.clock import Clock
from server.outcomes.stats import BINARY, Kind, Sample
from server.outcomes.summary import OutcomeBucket, SeriesKey

__all__ = ["OutcomeSeries", "OutcomeWindows"]


class _Bucket:
    __slots__ = ("n", "randomized_n", "randomized_sq", "randomized_sum", "sq", "start", "sum")

    def __init__(self, start: float) -> None:
        self.start = start
        self.n = 0
        self.sum = 0.0
        self.sq = 0.0
        self.randomized_n = 0
        self.randomized_sum = 0.0
        self.randomized_sq = 0.0


@dataclass(frozen=True)
class OutcomeSeries:
    """One version's outcome over a period: the randomized sample (what gates compare) and
    the count of every report, randomized or not."""

    model: str
    version: str
    name: str
    randomized: Sample
    reported: int


class _Series:
    def __init__(self, buckets: int) -> None:
        self.buckets: deque[_Bucket] = deque(maxlen=buckets)
        #: Every report since start, and their values' sum (what /metrics counts).
        self.reports = 0
        self.value_sum = 0.0


class OutcomeWindows:
    """Rolling outcome sums per (model, version, outcome name). Thread-safe."""

    def __init__(
        self, *, bucket_s: float = 60.0, buckets: int = 1440, clock: Clock = time.time
    ) -> None:
        self.bucket_s = bucket_s
        self._buckets = buckets
        self._clock = clock
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._kinds: dict[tuple[str, str], Kind] = {}
        self._lock = threading.Lock()

    def kind(self, model: str, name: str) -> Kind | None:
        """The kind `name` was first reported with for `model`, or None."""
        return self._kinds.get((model, name))

    def names(self, model: str) -> list[str]:
        """The outcome names reported for `model`, sorted."""
        with self._lock:
            return sorted(n for m, n in self._kinds if m == model)

    def claim(self, model: str, name: str, kind: Kind, limit: int) -> Kind | None:
        """The kind of `name` for `model`: as first reported, else `kind` now — unless the
        model has `limit` names already (None)."""
        with self._lock:
            found = self._kinds.get((model, name))
            if found is None:
                if sum(m == model for m, _ in self._kinds) >= limit:
                    return None
                found = self._kinds[(model, name)] = kind
            return found

    def add(self, model: str, version: str, name: str, value: float, randomized: bool) -> None:
        """One report of `name` for `version`, at the clock's now."""
        self.add_sums(model, version, name, 1, value, value * value, randomized)

    def add_sums(
        self,
        model: str,
        version: str,
        name: str,
        n: int,
        total: float,
        total_sq: float,
        randomized: bool,
    ) -> None:
        """`n` reports at once, by their sum and sum of squares (bulk feeds, simulations)."""
        now = self._clock()
        start = now - now % self.bucket_s
        key = (model, version, name)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(self._buckets)
            if not series.buckets or series.buckets[-1].start != start:
                series.buckets.append(_Bucket(start))
            series.reports += n
            series.value_sum += total
            b = series.buckets[-1]
            b.n += n
            b.sum += total
            b.sq += total_sq
            if randomized:
                b.randomized_n += n
                b.randomized_sum += total
                b.randomized_sq += total_sq

    def series(
        self, model: str, version: str, name: str, window_s: float, since: float = 0.0
    ) -> OutcomeSeries:
        """`version`'s outcome `name` in the last `window_s` seconds, not before `since` (a
        bucket that overlaps the period counts whole)."""
        lo = max(self._clock() - window_s, since)
        n = reported = 0
        total = total_sq = 0.0
        with self._lock:
            found = self._series.get((model, version, name))
            for b in found.buckets if found is not None else ():
                if b.start + self.bucket_s > lo:
                    reported += b.n
                    n += b.randomized_n
                    total += b.randomized_sum
                    total_sq += b.randomized_sq
        kind = self._kinds.get((model, name), BINARY)
        return OutcomeSeries(model, version, name, Sample(kind, n, total, total_sq), reported)

    def totals(self) -> list[tuple[str, str, str, int, float]]:
        """(model, version, name, reports, sum of values) of every series since start."""
        with self._lock:
            return [(*key, s.reports, s.value_sum) for key, s in sorted(self._series.items())]

    def export(self, model: str, since: float = 0.0) -> dict[SeriesKey, dict[float, OutcomeBucket]]:
        """`model`'s buckets that start at `since` or later, per series (what a replica
        publishes for the fleet, server.outcomes.summary)."""
        out: dict[SeriesKey, dict[float, OutcomeBucket]] = {}
        with self._lock:
            for (m, version, name), series in self._series.items():
                if m != model:
                    continue
                kind = self._kinds.get((model, name), BINARY)
                buckets = {
                    b.start: OutcomeBucket(
                        b.n, b.sum, b.sq, b.randomized_n, b.randomized_sum, b.randomized_sq
                    )
                    for b in series.buckets
                    if b.start >= since
                }
                if buckets:
                    out[SeriesKey(version, name, kind)] = buckets
        return out

    def models(self) -> list[str]:
        """The models with outcome reports."""
        with self._lock:
            return sorted({m for m, _ in self._kinds})

    def replicas(self, model: str) -> tuple[str, ...]:
        """Whose reports these are: this process alone (a fleet merges, fleet.outcomes)."""
        return ()

    def versions(self, model: str, name: str) -> list[str]:
        """The versions with reports of `name` for `model`, in version order."""
        with self._lock:
            found = {v for m, v, n in self._series if m == model and n == name}
        return sorted(found, key=lambda v: (len(v), v))
