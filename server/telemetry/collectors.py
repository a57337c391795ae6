"""The server's own metric families as a prometheus_client collector, read at scrape time.

Nothing here counts anything: every family is built, at each scrape, from state the server
keeps anyway. Exact per-version request counts come from the registry's statistics (every
request). The request, error and latency series by gRPC code come from the telemetry windows
(traced calls, counts scaled by sampling weight, so estimates). Rollout weights and stages come
from the current routing snapshot, shadow statistics from the shadow executor, promotion
decisions from the controller, queue and run figures from each version's scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from server.rollout.state import RolloutState
from server.shadow.executor import ShadowExecutor
from server.telemetry.windows import LATENCY_BOUNDS_MS, WindowProcessor

__all__ = ["Exact", "SchedulingSample", "ServingCollector", "ServingSources"]

Decisions: TypeAlias = Callable[[], Mapping[tuple[str, str], int]]
Rollouts: TypeAlias = Callable[[], Iterable[RolloutState]]
#: (model, version, successes, failures) of every loaded version.
Exact: TypeAlias = Callable[[], Iterable[tuple[str, str, int, int]]]
_SHADOW_COUNTERS = ("sampled", "completed", "dropped", "errors", "timeouts", "disagreements")
_VERSION = ("model", "version")
#: The window's 147 bounds (10 % apart) are what the promotion gates need; a dashboard needs
#: far fewer, and every exposed bucket is a sample per version per scrape. /metrics exposes every
#: 8th bound (about 2.1x apart, 50 us to 46 s) and +Inf: 20 buckets instead of 148, each an exact
#: cumulative count because it is one of the window's own bounds.
_EXPOSED_EVERY = 8
_LE: dict[int, str] = {
    i: f"{bound / 1000:g}" for i, bound in enumerate(LATENCY_BOUNDS_MS) if i % _EXPOSED_EVERY == 0
}
_LE[len(LATENCY_BOUNDS_MS)] = "+Inf"


@dataclass(frozen=True)
class SchedulingSample:
    """One version's scheduler at one moment (docs/scheduling.md), for the exposition."""

    model: str
    version: str
    queued: int
    running: int
    queue_count: int
    queue_seconds: float
    executions: int
    batch_rows: Mapping[int, int] = field(default_factory=dict)
    rejected: int = 0
    timeouts: int = 0
    shadow_shed: int = 0
    fallbacks: int = 0
    #: Wall-clock time of the version's session runs (a batch counted once).
    run_seconds: float = 0.0


@dataclass(frozen=True)
class ServingSources:
    """Where each family is read from, at scrape time."""

    windows: WindowProcessor
    rollouts: Rollouts
    shadow: ShadowExecutor
    decisions: Decisions
    exact: Exact = lambda: ()
    scheduling: Callable[[], Iterable[SchedulingSample]] = lambda: ()


class ServingCollector(Collector):
    """Requests, latency, rollouts, shadow, scheduling and promotion families."""

    def __init__(self, sources: ServingSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        src = self._sources
        yield from _requests(src.windows, src.exact())
        yield from _rollouts(list(src.rollouts()))
        yield from _shadow(src.shadow)
        yield from _scheduling(list(src.scheduling()))
        queue = GaugeMetricFamily("canaryserve_shadow_queue_depth", "Shadow jobs waiting.")
        queue.add_metric([], src.shadow.queue_depth())
        yield queue
        decisions = CounterMetricFamily(
            "canaryserve_promotion_decisions",
            "Promotion decisions by action.",
            labels=("model", "action"),
        )
        for (model, action), n in sorted(src.decisions().items()):
            decisions.add_metric([model, action], n)
        yield decisions


def _requests(
    windows: WindowProcessor, exact: Iterable[tuple[str, str, int, int]]
) -> Iterator[Metric]:
    family = CounterMetricFamily(
        "canaryserve_inference_requests",
        "Every inference request that reached a version, by result (exact, not sampled).",
        labels=(*_VERSION, "result"),
    )
    for model, version, successes, failures in exact:
        family.add_metric([model, version, "success"], successes)
        family.add_metric([model, version, "failure"], failures)
    yield family
    totals = sorted(windows.totals().items())
    by_code = CounterMetricFamily(
        "canaryserve_requests",
        "Traced inference calls by version and gRPC code, scaled by sampling weight.",
        labels=(*_VERSION, "code"),
    )
    errors = CounterMetricFamily(
        "canaryserve_errors", "Inference calls that did not return OK.", labels=_VERSION
    )
    latency = HistogramMetricFamily(
        "canaryserve_request_duration_seconds", "Inference latency.", labels=_VERSION
    )
    for (model, version), t in totals:
        for code, n in sorted(t.by_code.items()):
            by_code.add_metric([model, version, code], n)
        # A cancelled call says nothing about the version that served it.
        failed = sum(n for code, n in t.by_code.items() if code not in ("OK", "CANCELLED"))
        errors.add_metric([model, version], failed)
        running, buckets = 0.0, []
        for i, n in enumerate(t.latency):
            running += n
            if i in _LE:
                buckets.append((_LE[i], running))
        latency.add_metric([model, version], buckets, t.latency_sum_s)
    yield by_code
    yield errors
    yield latency


_ROLLOUT_GAUGES: tuple[tuple[str, str, Callable[[RolloutState], float]], ...] = (
    ("canaryserve_canary_weight_ratio", "Share of keyed traffic on the candidate.",
     lambda s: s.canary_ppm / 1e6),
    ("canaryserve_shadow_rate_ratio", "Share of stable traffic shadowed.",
     lambda s: s.shadow_ppm / 1e6),
    ("canaryserve_rollout_revision", "Revision of the model's rollout state.",
     lambda s: s.revision),
)  # fmt: skip


def _rollouts(states: list[RolloutState]) -> Iterator[Metric]:
    stage = GaugeMetricFamily(
        "canaryserve_version_stage",
        "1 for each version's current rollout stage.",
        labels=(*_VERSION, "stage"),
    )
    for s in states:
        stage.add_metric([s.model, s.stable, "stable"], 1)
        if s.candidate:
            stage.add_metric([s.model, s.candidate, s.phase.value], 1)
    yield stage
    for name, help_text, figure in _ROLLOUT_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=("model",))
        for s in states:
            family.add_metric([s.model], figure(s))
        yield family


def _shadow(shadow: ShadowExecutor) -> Iterator[Metric]:
    reports = shadow.snapshot()
    for counter in _SHADOW_COUNTERS:
        family = CounterMetricFamily(
            f"canaryserve_shadow_{counter}",
            f"Shadow jobs: {counter}.",
            labels=("model", "candidate"),
        )
        for r in reports:
            family.add_metric([r.model, r.candidate], getattr(r, counter))
        yield family
    by_reason = CounterMetricFamily(
        "canaryserve_shadow_dropped_by_reason",
        "Shadow jobs not run, by why (queue_full, primary_queued, ...).",
        labels=("model", "candidate", "reason"),
    )
    for r in reports:
        for reason, n in sorted(r.dropped_by_reason.items()):
            by_reason.add_metric([r.model, r.candidate, reason], n)
    yield by_reason


_G, _C = GaugeMetricFamily, CounterMetricFamily
_SCHEDULING = (
    (_G, "canaryserve_queue_depth", "Requests waiting in the version's queue.", "queued"),
    (_G, "canaryserve_instances_busy", "Runs of the version in progress.", "running"),
    (_C, "canaryserve_queue_requests", "Requests that left the queue to run.", "queue_count"),
    (_C, "canaryserve_queue_seconds", "Their time in the queue.", "queue_seconds"),
    (_C, "canaryserve_executions", "Session runs (a batch is one).", "executions"),
    (_C, "canaryserve_fallbacks", "Candidate requests stable served.", "fallbacks"),
)  # fmt: skip


def _scheduling(samples: list[SchedulingSample]) -> Iterator[Metric]:
    for kind, name, help_text, attr in _SCHEDULING:
        family = kind(name, help_text, labels=_VERSION)
        for s in samples:
            family.add_metric([s.model, s.version], getattr(s, attr))
        yield family
    sheds = CounterMetricFamily(
        "canaryserve_sheds",
        "Requests the version's queue refused: full, timeout, shadow.",
        labels=(*_VERSION, "reason"),
    )
    batches = CounterMetricFamily(
        "canaryserve_batch_executions",
        "Session runs by batch size (rows).",
        labels=(*_VERSION, "batch_size"),
    )
    compute = CounterMetricFamily(
        "canaryserve_version_compute_seconds",
        "Wall-clock time of the version's session runs: primary, shadow and batched runs,"
        " a batch counted once (divide by canaryserve_executions_total for the mean run).",
        labels=_VERSION,
    )
    for s in samples:
        for reason, n in (("full", s.rejected), ("timeout", s.timeouts), ("shadow", s.shadow_shed)):
            sheds.add_metric([s.model, s.version, reason], n)
        for rows, n in sorted(s.batch_rows.items()):
            batches.add_metric([s.model, s.version, str(rows)], n)
        compute.add_metric([s.model, s.version], s.run_seconds)
    yield sheds
    yield batches
    yield compute
