"""The shadow aggregates: per-(model, candidate) counts, comparisons, latency, worst cases.

Each output's running statistics are `output_stats.OutputStats`; `snapshot()` returns a
`report.ShadowReport` (the report's types are importable from here too).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import random
import threading
from collections import deque

from server.intervals import wilson_interval
from server.shadow.job import ShadowOutcome, ShadowResult
from server.shadow.output_stats import OutputStats
from server.shadow.report import (
    LatencyReport,
    OutputReport,
    RateEstimate,
    ShadowReport,
    WorstDisagreement,
    json_float,
)

__all__ = [
    "LatencyReport",
    "OutputReport",
    "RateEstimate",
    "ShadowReport",
    "ShadowStats",
    "WorstDisagreement",
]


log = logging.getLogger(__name__)


class ShadowStats:
    """Aggregates of one (model, candidate): counts, latency, per-output error, worst cases.

    The public counters follow the module docstring; they may be read without the lock
    (snapshot() reads them together under it).
    """

    def __init__(
        self,
        model: str,
        candidate: str,
        worst_n: int = 10,
        latency_samples: int = 1024,
        errors_kept: int = 5,
    ) -> None:
        self.model = model
        self.candidate = candidate
        self.submitted = self.dropped = self.completed = 0
        self.errors = self.timeouts = self.disagreements = 0
        self._lock = threading.Lock()
        self._worst_n = worst_n
        self._worst: list[tuple[float, int, WorstDisagreement]] = []  # min-heap: evict mildest
        self._seq = itertools.count()
        self._latency_cap = latency_samples
        self._latencies: list[float] = []  # uniform reservoir (Algorithm R) of run latencies
        self._latency_seen = 0
        self._rng = random.Random(0)  # seeded: same traffic, same report
        self._outputs: dict[str, OutputStats] = {}
        self._errors: deque[str] = deque(maxlen=errors_kept)
        self._dropped_by: dict[str, int] = {}

    @property
    def sampled(self) -> int:
        return self.submitted + self.dropped

    def record_submitted(self) -> None:
        with self._lock:
            self.submitted += 1

    def record_dropped(self, abandoned: bool = False, reason: str = "queue_full") -> None:
        """Count a drop and why; `abandoned`: it had been submitted (and was shed later, or
        was still queued at shutdown)."""
        with self._lock:
            self.dropped += 1
            self.submitted -= abandoned
            self._dropped_by[reason] = self._dropped_by.get(reason, 0) + 1

    def record(self, result: ShadowResult) -> None:
        c = result.comparison
        worst = c.worst() if c is not None else None
        entry = None
        if worst is not None:  # built outside the lock
            job = result.job
            entry = WorstDisagreement(
                job.request_id, job.routing_key, worst.name, str(worst.reason),
                worst.max_abs_err, worst.severity,
            )  # fmt: skip
        with self._lock:
            self.timeouts += result.outcome in (ShadowOutcome.SLOW, ShadowOutcome.EXPIRED)
            if result.outcome is ShadowOutcome.ERROR:
                self.errors += 1
                self._errors.append(result.error or "")
            if c is None:
                return
            self.completed += 1
            self.disagreements += c.disagree
            if result.latency_s is not None:
                self._add_latency(result.latency_s)
            for o in c.outputs:
                self._outputs.setdefault(o.name, OutputStats()).add(o)
            if entry is not None and worst is not None:
                item = (worst.severity, next(self._seq), entry)
                if len(self._worst) < self._worst_n:
                    heapq.heappush(self._worst, item)
                elif item > self._worst[0]:
                    heapq.heapreplace(self._worst, item)

    def _add_latency(self, seconds: float) -> None:
        self._latency_seen += 1
        if len(self._latencies) < self._latency_cap:
            self._latencies.append(seconds)
        else:
            j = self._rng.randrange(self._latency_seen)
            if j < self._latency_cap:
                self._latencies[j] = seconds

    def disagreement_rate(self) -> RateEstimate:
        """Disagreements among completed runs, with a Wilson 95% interval."""
        with self._lock:
            return _rate(self.disagreements, self.completed)

    def worst(self) -> list[WorstDisagreement]:
        """The worst disagreements kept, worst first."""
        with self._lock:
            return _ranked(self._worst)

    def recent_errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def snapshot(self) -> ShadowReport:
        """A report of one consistent moment (non-finite numbers become None)."""
        with self._lock:
            rate = _rate(self.disagreements, self.completed)
            counts = (
                self.sampled, self.submitted, self.dropped, self.completed, self.errors,
                self.timeouts, self.disagreements,
            )  # fmt: skip
            outputs = {name: o.report() for name, o in self._outputs.items()}
            worst = _ranked(self._worst)
            errors = tuple(self._errors)
            samples = sorted(self._latencies)
            dropped_by = dict(self._dropped_by)
        return ShadowReport(
            self.model, self.candidate, *counts,
            disagreement_rate=rate,
            latency=LatencyReport(
                json_float(_percentile(samples, 0.5), 1e3),
                json_float(_percentile(samples, 0.99), 1e3),
                len(samples),
            ),
            outputs=outputs,
            worst=tuple(
                dataclasses.replace(
                    w, max_abs_err=json_float(w.max_abs_err), severity=json_float(w.severity)
                )
                for w in worst
            ),
            recent_errors=errors,
            dropped_by_reason=dropped_by,
        )  # fmt: skip


def _rate(count: int, n: int) -> RateEstimate:
    low, high = wilson_interval(count, n)
    return RateEstimate(count, n, count / n if n else None, low, high)


def _percentile(ordered: list[float], q: float) -> float | None:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def _ranked(heap: list[tuple[float, int, WorstDisagreement]]) -> list[WorstDisagreement]:
    return [entry for _, _, entry in sorted(heap, key=lambda t: (-t[0], t[1]))]
