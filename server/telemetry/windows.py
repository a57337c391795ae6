"""Per-model, per-version rolling windows, fed by an OpenTelemetry span processor.

Every finished inference span that reaches `WindowProcessor.on_end` lands in its version's
time-bucketed window: requests, errors by gRPC code, and a latency histogram. Spans of stable
requests may be sampled (see telemetry.StageAwareSampler); each span carries its sampling
weight, so counts can be scaled back while statistics use the observations themselves. A span
marked with the skip attribute (recorded only because the caller's trace was sampled, outside
the stage-aware sample) is exported but never counted: it would bias both.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from server.clock import Clock

__all__ = [
    "LATENCY_BOUNDS_MS",
    "RawBucket",
    "VersionTotals",
    "WindowProcessor",
    "WindowSummary",
    "quantile",
]


#: Histogram upper bounds in milliseconds, 10 % apart (so a latency ratio gate of 1.3 is not
#: blurred by the buckets); the last bucket is +Inf.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(
    round(0.05 * 1.1**i, 4) for i in range(int(math.log(60_000 / 0.05, 1.1)) + 1)
)
_MAX_TRACES = 5
#: A call the client cancelled says nothing about the version that served it.
_NOT_ERRORS = frozenset({"OK", "CANCELLED"})


@dataclass
class _Bucket:
    start: float
    requests: int = 0
    errors: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


@dataclass
class VersionTotals:
    """Cumulative, weight-scaled counters of one version (for Prometheus)."""

    requests: float = 0.0
    by_code: dict[str, float] = field(default_factory=dict)
    latency: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BOUNDS_MS) + 1))
    latency_sum_s: float = 0.0


@dataclass(frozen=True)
class WindowSummary:
    """One version over the last `window_s` seconds (observations, not scaled)."""

    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_trace_ids: tuple[str, ...]
    window_s: float


def quantile(hist: list[int], total: int, q: float) -> float | None:
    """The q-quantile, interpolated linearly inside the bucket that holds its rank."""
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        if n and seen + n >= rank:
            if i >= len(LATENCY_BOUNDS_MS):
                return LATENCY_BOUNDS_MS[-1]
            low = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
            return low + (LATENCY_BOUNDS_MS[i] - low) * (rank - seen) / n
        seen += n
    return LATENCY_BOUNDS_MS[-1]


class _Window:
    def __init__(self, bucket_s: float, buckets: int) -> None:
        self.bucket_s = bucket_s
        self.buckets: deque[_Bucket] = deque(maxlen=buckets)
        self.totals = VersionTotals()
        self.error_traces: deque[tuple[float, str]] = deque(maxlen=_MAX_TRACES)
        self.lock = threading.Lock()

    def add(self, now: float, ms: float, code: str, weight: float, trace_id: str) -> None:
        slot = bisect.bisect_left(LATENCY_BOUNDS_MS, ms)
        start = now - now % self.bucket_s
        with self.lock:
            if not self.buckets or self.buckets[-1].start != start:
                self.buckets.append(_Bucket(start))
            b = self.buckets[-1]
            b.requests += 1
            b.by_code[code] = b.by_code.get(code, 0) + 1
            b.latency[slot] += 1
            t = self.totals
            t.requests += weight
            t.by_code[code] = t.by_code.get(code, 0.0) + weight
            t.latency[slot] += weight
            t.latency_sum_s += weight * ms / 1000
            if code not in _NOT_ERRORS:
                b.errors += 1
                self.error_traces.append((now, trace_id))

    def summary(self, now: float, window_s: float, since: float) -> WindowSummary:
        lo = max(now - window_s, since)
        hist = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        requests = errors = 0
        with self.lock:
            for b in self.buckets:
                if b.start + self.bucket_s > lo:
                    requests += b.requests
                    errors += b.errors
                    for i, n in enumerate(b.latency):
                        hist[i] += n
            traces = tuple(t for at, t in self.error_traces if at >= lo)
        return summary_of(requests, errors, hist, traces, now=now, lo=lo)


def summary_of(
    requests: int, errors: int, hist: list[int], traces: tuple[str, ...], *, now: float, lo: float
) -> WindowSummary:
    """The summary of a span from `lo` to `now` with these counts and latency histogram (one
    replica's window, or the fleet's merged buckets: server.telemetry.merge)."""
    return WindowSummary(
        requests=requests,
        errors=errors,
        p50_ms=quantile(hist, requests, 0.50),
        p95_ms=quantile(hist, requests, 0.95),
        p99_ms=quantile(hist, requests, 0.99),
        error_trace_ids=traces,
        window_s=max(0.0, now - lo),  # `since` may lie ahead (a step-down)
    )


#: One exported bucket: start, requests, errors, calls by gRPC code, {latency slot: calls}.
RawBucket = tuple[float, int, int, dict[str, int], dict[int, int]]


class WindowProcessor(SpanProcessor):
    """Aggregates inference spans into per-(model, version) windows. Cheap and never raises."""

    def __init__(
        self,
        *,
        attr_model: str,
        attr_version: str,
        attr_code: str,
        attr_weight: str,
        attr_skip: str | None = None,
        bucket_s: float = 1.0,
        buckets: int = 600,
        clock: Clock = time.time,
    ) -> None:
        self._attrs = (attr_model, attr_version, attr_code, attr_weight)
        self._skip = attr_skip
        self._bucket_s = bucket_s
        self._buckets = buckets
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._create = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        a_model, a_version, a_code, a_weight = self._attrs
        model, version = attrs.get(a_model), attrs.get(a_version)
        if not isinstance(model, str) or not isinstance(version, str):
            return  # not routed (e.g. unknown model): nothing to attribute
        if self._skip is not None and attrs.get(self._skip):
            return  # outside the sample the weights describe
        if span.start_time is None or span.end_time is None:
            return
        window = self._window(model, version)
        weight = attrs.get(a_weight, 1.0)
        window.add(
            self._clock(),
            (span.end_time - span.start_time) / 1e6,
            str(attrs.get(a_code, "OK")),
            float(weight) if isinstance(weight, int | float) else 1.0,
            format(span.context.trace_id, "032x") if span.context else "",
        )

    def _window(self, model: str, version: str) -> _Window:
        window = self._windows.get((model, version))
        if window is None:
            with self._create:
                window = self._windows.setdefault(
                    (model, version), _Window(self._bucket_s, self._buckets)
                )
        return window

    @property
    def bucket_s(self) -> float:
        """The granularity of `since`: a bucket that overlaps it counts whole."""
        return self._bucket_s

    def summary(
        self, model: str, version: str, window_s: float, since: float = 0.0
    ) -> WindowSummary:
        """The version's observations in the last `window_s` seconds, not before `since`."""
        window = self._windows.get((model, version)) or _Window(self._bucket_s, 1)
        return window.summary(self._clock(), window_s, since)

    def versions(self, model: str) -> list[str]:
        """The versions of `model` that have a window here."""
        return [v for m, v in list(self._windows) if m == model]

    def export(
        self, model: str, version: str, horizon_s: float
    ) -> tuple[list[RawBucket], list[tuple[float, str]]]:
        """The version's non-empty buckets of the last `horizon_s` seconds and its error
        traces, copied (telemetry.merge turns them into mergeable counts)."""
        window = self._windows.get((model, version))
        if window is None:
            return [], []
        lo = self._clock() - horizon_s
        with window.lock:
            buckets = [
                (b.start, b.requests, b.errors, dict(b.by_code),
                 {i: n for i, n in enumerate(b.latency) if n})
                for b in window.buckets
                if b.start + window.bucket_s > lo and b.requests
            ]  # fmt: skip
            traces = [(at, t) for at, t in window.error_traces if at >= lo]
        return buckets, traces

    def totals(self) -> dict[tuple[str, str], VersionTotals]:
        """Cumulative scaled counters per (model, version); a copy."""
        out: dict[tuple[str, str], VersionTotals] = {}
        for key, w in list(self._windows.items()):
            with w.lock:
                t = w.totals
                out[key] = VersionTotals(
                    t.requests, dict(t.by_code), list(t.latency), t.latency_sum_s
                )
        return out

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
