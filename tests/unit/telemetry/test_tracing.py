"""Tracing without a server: stage-aware sampling and weights, key hashes, the caller's trace,
shadow spans linked to their primary, promotion decisions as span events."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from server.rollout.router import Route, RouteReason, Stage
from server.shadow.comparison import compare
from server.shadow.job import ShadowJob, ShadowOutcome, ShadowResult
from server.telemetry.tracing import Telemetry, key_hash
from server.testing import FakeRunner

STABLE = Route("1", Stage.STABLE, RouteReason.HASH)
IDLE = Route("1", Stage.STABLE, RouteReason.NO_ROLLOUT)
CANARY = Route("2", Stage.CANARY, RouteReason.HASH)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(exporter: InMemorySpanExporter) -> Iterator[Telemetry]:
    t = Telemetry(stable_ratio=0.1, idle_ratio=0.02, exporters=[exporter])
    yield t
    t.shutdown()


def draws(*values: float) -> Callable[[], float]:
    """A draw that answers `values` in turn, then fails (the test drew more than it said)."""
    it = iter(values)
    return lambda: next(it)


def traced(telemetry: Telemetry, route: Route, key: str | None = None) -> bool:
    """Whether sampling keeps a call on `route`; a kept span is finished at once."""
    span = telemetry.open_inference("ModelInfer", {}, "m", route, key, time.perf_counter_ns())
    if span is None:
        return False
    telemetry.finish(span, None, "")
    return True


def test_stable_calls_are_sampled_at_the_stable_ratio_and_candidate_calls_always(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    telemetry.draw = draws(0.05, 0.1, 0.99)
    assert [traced(telemetry, STABLE) for _ in range(3)] == [True, False, False]
    assert all(traced(telemetry, CANARY) for _ in range(5))  # no draw at all
    weights = [
        (s.attributes or {}).get("canary.sample_weight") for s in exporter.get_finished_spans()
    ]
    assert weights == [pytest.approx(10.0)] + [None] * 5  # a kept stable span stands for 10


def test_a_model_without_a_rollout_is_sampled_at_the_idle_ratio(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    telemetry.draw = draws(0.01, 0.05)
    assert [traced(telemetry, IDLE), traced(telemetry, IDLE)] == [True, False]
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["canary.sample_weight"] == pytest.approx(50.0)


def test_sampled_counts_scale_back_to_the_real_count_in_the_windows(
    exporter: InMemorySpanExporter,
) -> None:
    telemetry = Telemetry(stable_ratio=0.25, exporters=[exporter])
    telemetry.draw = itertools.cycle([0.1, 0.5, 0.6, 0.7]).__next__
    try:
        kept = sum(traced(telemetry, STABLE) for _ in range(400))
        summary = telemetry.windows.summary("m", "1", window_s=60)
        totals = telemetry.windows.totals()[("m", "1")]
    finally:
        telemetry.shutdown()
    assert kept == summary.requests == 100
    assert totals.requests == pytest.approx(400.0)


def test_a_routing_key_is_recorded_only_as_a_short_stable_hash() -> None:
    digest = key_hash("alice@example.com")
    assert digest == key_hash("alice@example.com") != key_hash("bob@example.com")
    assert len(digest) == 16 and set(digest) <= set("0123456789abcdef")
    assert key_hash("\udc80") == key_hash("\udc80")  # not valid text: hashed all the same


def test_a_callers_traceparent_is_continued(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    metadata = {"traceparent": f"00-{trace_id}-{parent}-01"}
    span = telemetry.open_inference(
        "ModelInfer", metadata, "m", CANARY, None, time.perf_counter_ns()
    )
    assert span is not None
    telemetry.finish(span, None, "r-1")
    (done,) = exporter.get_finished_spans()
    assert format(done.context.trace_id, "032x") == trace_id
    assert done.parent is not None and format(done.parent.span_id, "016x") == parent


def test_a_span_starts_when_the_call_arrived(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    arrived = time.perf_counter_ns() - 250_000_000  # the call came in 250 ms ago
    span = telemetry.open_inference("ModelInfer", {}, "m", CANARY, None, arrived)
    assert span is not None
    telemetry.finish(span, None, "")
    (done,) = exporter.get_finished_spans()
    assert done.start_time is not None and done.end_time is not None
    assert done.end_time - done.start_time >= 250_000_000


def _shadow_result(telemetry: Telemetry, disagree: bool, error: str | None = None) -> ShadowResult:
    primary_span = telemetry.open_inference(
        "ModelInfer", {}, "m", CANARY, None, time.perf_counter_ns()
    )
    assert primary_span is not None
    context = primary_span.get_span_context()
    telemetry.finish(primary_span, None, "")
    primary = {"y": np.zeros(1)}
    job = ShadowJob("m", "2", FakeRunner(), {"x": np.zeros(1)}, ("y",), primary, "req-9",
                    trace_context=context)  # fmt: skip
    if error is not None:
        return ShadowResult(job, ShadowOutcome.ERROR, 0.001, 0.002, None, error)
    comparison = compare(primary, {"y": np.ones(1) if disagree else np.zeros(1)})
    return ShadowResult(job, ShadowOutcome.OK, 0.001, 0.002, comparison)


def test_a_shadow_span_links_to_its_primary_and_tells_the_outcome(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    telemetry.draw = draws()  # a disagreement is always traced: no draw
    telemetry.shadow_span(_shadow_result(telemetry, disagree=True))
    primary, shadow = exporter.get_finished_spans()
    assert shadow.name == "shadow"
    assert shadow.links and shadow.links[0].context.span_id == primary.context.span_id
    assert shadow.attributes is not None
    assert shadow.attributes["canary.shadow.version"] == "2"
    assert shadow.attributes["canary.shadow.outcome"] == "ok"
    assert shadow.attributes["canary.shadow.disagree"] is True
    assert shadow.attributes["canary.request_id"] == "req-9"
    assert shadow.start_time is not None and shadow.end_time is not None
    assert shadow.end_time - shadow.start_time == 3_000_000  # queued 1 ms, ran 2 ms


def test_agreeing_shadow_runs_are_sampled_and_errors_always_traced(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    telemetry.draw = draws(0.5, 0.05)
    telemetry.shadow_span(_shadow_result(telemetry, disagree=False))  # dropped at 0.5
    telemetry.shadow_span(_shadow_result(telemetry, disagree=False))  # kept at 0.05
    telemetry.shadow_span(_shadow_result(telemetry, disagree=False, error="Boom: no"))
    shadows = [s for s in exporter.get_finished_spans() if s.name == "shadow"]
    assert [(s.attributes or {}).get("canary.shadow.outcome") for s in shadows] == ["ok", "error"]
    assert not shadows[1].status.is_ok and shadows[1].status.description == "Boom: no"


def test_a_promotion_decision_is_a_span_event(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    telemetry.decision_event(
        "m", "2", {"canary.decision.action": "hold", "canary.decision.step": 0}
    )
    (span,) = exporter.get_finished_spans()
    assert span.name == "promotion.decide"
    assert span.attributes is not None and span.attributes["canary.model"] == "m"
    (event,) = span.events
    assert event.name == "decision"
    assert dict(event.attributes or {}) == {
        "canary.decision.action": "hold",
        "canary.decision.step": 0,
    }
