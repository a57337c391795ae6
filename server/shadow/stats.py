"""The shadow aggregates: per-(model, candidate) counts, comparisons, latency, worst cases."""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from server.intervals import wilson_interval
from server.shadow.comparison import Comparison, ComparisonPolicy, OutputComparison

if TYPE_CHECKING:  # registry pulls in onnxruntime and the tensor bridge; shadow needs neither
    from server.serving.runner import Runner

__all__ = [
    "Clock",
    "PolicyFor",
    "RateEstimate",
    "ResultListener",
    "ShadowJob",
    "ShadowOutcome",
    "ShadowResult",
    "ShadowStats",
    "WorstDisagreement",
]


log = logging.getLogger(__name__)

Clock: TypeAlias = Callable[[], float]
PolicyFor: TypeAlias = Callable[[str], ComparisonPolicy]


@dataclass(frozen=True)
class RateEstimate:
    """count of n, as a rate with its Wilson 95% interval; rate is None when n == 0."""

    count: int
    n: int
    rate: float | None
    low: float
    high: float


@dataclass(frozen=True, eq=False)  # identity equality: array fields do not compare as bools
class ShadowJob:
    """One request to run again on the candidate; feeds and primary are the primary's own arrays."""

    model: str
    candidate: str  # the candidate version (Route.shadow_version)
    runner: Runner
    feeds: Mapping[str, npt.NDArray[np.generic]]  # not mutated after submit; read-only is fine
    output_names: Sequence[str]
    primary: Mapping[str, npt.NDArray[np.generic]]  # output name -> what the caller was sent
    request_id: str = ""
    routing_key: str | None = None
    enqueued_at: float = field(default_factory=time.perf_counter)  # on the executor's clock
    trace_context: object = None  # opaque: lets telemetry link the shadow span to the primary


class ShadowOutcome(enum.StrEnum):
    """How one shadow job ended (SLOW and EXPIRED both count as timeouts)."""

    OK = "ok"
    SLOW = "slow"  # completed and compared, but took longer than timeout_s
    EXPIRED = "expired"  # waited in the queue longer than timeout_s; not run
    ERROR = "error"  # the candidate raised


@dataclass(frozen=True, eq=False)
class ShadowResult:
    """What one shadow job came to; handed to the executor's `on_result` listener."""

    job: ShadowJob
    outcome: ShadowOutcome
    queued_s: float
    latency_s: float | None = None  # the candidate's run, when it ran
    comparison: Comparison | None = None  # when it returned outputs
    error: str | None = None


ResultListener: TypeAlias = Callable[[ShadowResult], None]


@dataclass(frozen=True)
class WorstDisagreement:
    """One of the worst disagreements seen: enough to find and replay the request."""

    request_id: str
    routing_key: str | None
    output: str
    reason: str
    max_abs_err: float | None
    severity: float


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

    def report(self) -> dict[str, Any]:
        rows, n = self.class_rows, self.compared
        return {
            **self.sums,
            "max_abs_err": _json_float(self.max_abs) if n else None,
            "mean_abs_err": _json_float(self.mean_abs_sum / n) if n else None,
            "max_rel_err": _json_float(self.max_rel) if n else None,
            "argmax_agree_rate": self.agree_rows / rows if rows else None,
            "topk_overlap": self.topk_sum / rows if rows else None,
            "class_rows": rows,
        }


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

    @property
    def sampled(self) -> int:
        return self.submitted + self.dropped

    def record_submitted(self) -> None:
        with self._lock:
            self.submitted += 1

    def record_dropped(self, abandoned: bool = False) -> None:
        """Count a drop; `abandoned`: it had been submitted and was still queued at shutdown."""
        with self._lock:
            self.dropped += 1
            self.submitted -= abandoned

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
            if entry is not None:
                item = (entry.severity, next(self._seq), entry)
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

    def latency_percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (q in (0, 1]) of sampled run latencies, seconds."""
        with self._lock:
            samples = list(self._latencies)
        return _percentile(sorted(samples), q)

    def worst(self) -> list[WorstDisagreement]:
        """The worst disagreements kept, worst first."""
        with self._lock:
            return _ranked(self._worst)

    def recent_errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able report of one consistent moment (non-finite numbers become None)."""
        with self._lock:
            rate = _rate(self.disagreements, self.completed)
            report: dict[str, Any] = {
                "model": self.model, "candidate": self.candidate, "sampled": self.sampled,
                "submitted": self.submitted, "dropped": self.dropped,
                "completed": self.completed, "errors": self.errors, "timeouts": self.timeouts,
                "disagreements": self.disagreements,
                "outputs": {name: o.report() for name, o in self._outputs.items()},
                "worst": _ranked(self._worst), "recent_errors": list(self._errors),
            }  # fmt: skip
            samples = list(self._latencies)
        samples.sort()
        report["disagreement_rate"] = {"rate": rate.rate, "low": rate.low, "high": rate.high}
        report["latency_ms"] = {
            "p50": _json_float(_percentile(samples, 0.5), 1e3),
            "p99": _json_float(_percentile(samples, 0.99), 1e3),
            "samples": len(samples),
        }
        report["worst"] = [
            {
                **vars(w),
                "max_abs_err": _json_float(w.max_abs_err),
                "severity": _json_float(w.severity),
            }
            for w in report["worst"]
        ]
        return report


def _rate(count: int, n: int) -> RateEstimate:
    low, high = wilson_interval(count, n)
    return RateEstimate(count, n, count / n if n else None, low, high)


def _percentile(ordered: list[float], q: float) -> float | None:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def _ranked(heap: list[tuple[float, int, WorstDisagreement]]) -> list[WorstDisagreement]:
    return [entry for _, _, entry in sorted(heap, key=lambda t: (-t[0], t[1]))]


def _json_float(x: float | None, scale: float = 1.0) -> float | None:
    return x * scale if x is not None and math.isfinite(x) else None
