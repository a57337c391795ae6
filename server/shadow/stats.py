"""The shadow aggregates: per-(model, candidate) counts, comparisons, latency, worst cases."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from server.intervals import wilson_interval
from server.shadow.comparison import OutputComparison
from server.shadow.job import ShadowOutcome, ShadowResult

__all__ = [
    "LatencyReport",
    "OutputReport",
    "RateEstimate",
    "ShadowReport",
    "ShadowStats",
    "WorstDisagreement",
]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateEstimate:
    """count of n, as a rate with its Wilson 95% interval; rate is None when n == 0."""

    count: int
    n: int
    rate: float | None
    low: float
    high: float


@dataclass(frozen=True)
class WorstDisagreement:
    """One of the worst disagreements seen: enough to find and replay the request."""

    request_id: str
    routing_key: str | None
    output: str
    reason: str
    max_abs_err: float | None
    severity: float | None  # None only in reports, where a non-finite severity is not JSON


@dataclass(frozen=True)
class OutputReport:
    """How one output compared so far: counts summed over runs, then error and agreement."""

    count: int
    disagree: int
    missing: int
    shape_mismatch: int
    dtype_mismatch: int
    nan_primary: int
    nan_shadow: int
    inf_primary: int
    inf_shadow: int
    max_abs_err: float | None
    mean_abs_err: float | None
    max_rel_err: float | None
    argmax_agree_rate: float | None  # row-weighted, for class-score outputs
    topk_overlap: float | None
    class_rows: int


@dataclass(frozen=True)
class LatencyReport:
    """Percentiles of the candidate's shadow runs, in milliseconds (None before any run)."""

    p50: float | None
    p99: float | None
    samples: int


@dataclass(frozen=True)
class ShadowReport:
    """One (model, candidate)'s shadow aggregates at one moment; `as_dict()` is its JSON form."""

    model: str
    candidate: str
    sampled: int
    submitted: int
    dropped: int
    completed: int
    errors: int
    timeouts: int
    disagreements: int
    disagreement_rate: RateEstimate
    latency: LatencyReport
    outputs: dict[str, OutputReport]
    worst: tuple[WorstDisagreement, ...]
    recent_errors: tuple[str, ...]
    dropped_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    """Why sampled requests were not compared: `queue_full` (the shadow queue), `primary_busy`
    (another inference call was being served: the primary needed the CPU), `cpu_busy` (the
    process used more than shadow_max_cpu of its cores), `primary_queued`
    (stable had requests waiting), `candidate_busy` (the candidate's slots were taken by its
    own traffic), `budget` (shadow_max_busy), `shutdown`."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the admin API's report_json), key names as documented in docs/."""
        doc = dataclasses.asdict(self)
        rate = self.disagreement_rate
        doc["disagreement_rate"] = {"rate": rate.rate, "low": rate.low, "high": rate.high}
        doc["latency_ms"] = doc.pop("latency")
        doc["worst"] = [dict(w) for w in doc["worst"]]
        doc["recent_errors"] = list(self.recent_errors)
        return doc


#: OutputComparison fields summed per output: how many outputs disagreed or were missing,
#: had a mismatched shape or dtype, and how many NaN/Inf elements each side produced.
_SUMMED = (
    "disagree", "missing", "shape_mismatch", "dtype_mismatch",
    "nan_primary", "nan_shadow", "inf_primary", "inf_shadow",
)  # fmt: skip


class _OutputStats:
    """Running statistics of one output (guarded by the owning ShadowStats' lock)."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(("count", *_SUMMED), 0)
        self.max_abs = self.max_rel = self.mean_abs_sum = 0.0
        self.compared = self.class_rows = 0
        self.agree_rows = self.topk_sum = 0.0

    def add(self, o: OutputComparison) -> None:
        self.sums["count"] += 1
        for name in _SUMMED:
            self.sums[name] += getattr(o, name)
        if o.max_abs_err is not None and o.mean_abs_err is not None and o.max_rel_err is not None:
            self.max_abs = max(self.max_abs, o.max_abs_err)
            self.max_rel = max(self.max_rel, o.max_rel_err)
            self.mean_abs_sum += o.mean_abs_err
            self.compared += 1
        if o.argmax_agree_rate is not None and o.topk_overlap is not None:
            # Row-weighted, so a batch of 64 rows weighs 64 times a batch of one.
            self.class_rows += o.rows
            self.agree_rows += o.argmax_agree_rate * o.rows
            self.topk_sum += o.topk_overlap * o.rows

    def report(self) -> OutputReport:
        rows, n = self.class_rows, self.compared
        return OutputReport(
            **self.sums,
            max_abs_err=_json_float(self.max_abs) if n else None,
            mean_abs_err=_json_float(self.mean_abs_sum / n) if n else None,
            max_rel_err=_json_float(self.max_rel) if n else None,
            argmax_agree_rate=self.agree_rows / rows if rows else None,
            topk_overlap=self.topk_sum / rows if rows else None,
            class_rows=rows,
        )


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
        self._outputs: dict[str, _OutputStats] = {}
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
                self._outputs.setdefault(o.name, _OutputStats()).add(o)
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
                _json_float(_percentile(samples, 0.5), 1e3),
                _json_float(_percentile(samples, 0.99), 1e3),
                len(samples),
            ),
            outputs=outputs,
            worst=tuple(
                dataclasses.replace(
                    w, max_abs_err=_json_float(w.max_abs_err), severity=_json_float(w.severity)
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


def _json_float(x: float | None, scale: float = 1.0) -> float | None:
    return x * scale if x is not None and math.isfinite(x) else None
