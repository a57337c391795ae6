"""The Prometheus exposition as rendered from its sources, read back by prometheus_client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.rollout.state import Phase, RolloutState
from server.shadow.executor import ShadowExecutor
from server.telemetry.metrics import render
from server.testing import FakeClock
from tests.support.shadow import record_results
from tests.support.spans import feed, window_processor
from tests.support.waiting import WAIT

Samples = dict[str, list[tuple[dict[str, str], float]]]

CANARY = RolloutState(
    model="classifier", stable="2", candidate="1", phase=Phase.CANARY, canary_ppm=50_000,
    shadow_ppm=10_000, salt="s", rollout_id=1, revision=3,
)  # fmt: skip
ODD = 'a "quoted" \\ model'


@pytest.fixture
def shadow() -> Iterator[ShadowExecutor]:
    executor = ShadowExecutor()
    yield executor
    assert executor.shutdown(WAIT)


def parse(text: str) -> tuple[Samples, list[tuple[str, str, str]]]:
    """Samples by sample name, and every family as the parser read it: (name, type, help)."""
    samples: Samples = {}
    families = []
    for family in text_string_to_metric_families(text):
        families.append((family.name, family.type, family.documentation))
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples, families


def by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(labels[k] for k in keys): value for labels, value in samples.get(name, [])}


@pytest.fixture
def exposition(shadow: ShadowExecutor) -> tuple[Samples, list[tuple[str, str, str]]]:
    windows = window_processor(FakeClock(now=1_000.0))
    feed(windows, "classifier", "1", 3, ms=2.0)  # candidate spans: weight 1
    feed(windows, "classifier", "1", 1, ms=2.0, code="CANCELLED")
    feed(windows, "classifier", "2", 1, ms=1.0, weight=10.0)  # stable, sampled at 10 %
    feed(windows, "classifier", "2", 1, ms=1.0, code="INTERNAL", weight=10.0)
    stats = shadow.reset("classifier", "1")
    record_results(stats, agree=5, disagree=2, errors=1)
    stats.record_dropped()
    text = render(
        windows,
        [CANARY, RolloutState(model=ODD, stable="1", revision=7)],
        shadow,
        {("classifier", "advance"): 2, ("classifier", "hold"): 5},
        [("classifier", "1", 4, 0), ("classifier", "2", 70, 9)],
    )
    return parse(text)


TYPES = {
    "canaryserve_inference_requests": "counter",
    "canaryserve_requests": "counter",
    "canaryserve_errors": "counter",
    "canaryserve_request_duration_seconds": "histogram",
    "canaryserve_version_stage": "gauge",
    "canaryserve_canary_weight_ratio": "gauge",
    "canaryserve_shadow_rate_ratio": "gauge",
    "canaryserve_rollout_revision": "gauge",
    "canaryserve_shadow_sampled": "counter",
    "canaryserve_shadow_completed": "counter",
    "canaryserve_shadow_dropped": "counter",
    "canaryserve_shadow_errors": "counter",
    "canaryserve_shadow_timeouts": "counter",
    "canaryserve_shadow_disagreements": "counter",
    "canaryserve_shadow_dropped_by_reason": "counter",
    "canaryserve_queue_depth": "gauge",
    "canaryserve_instances_busy": "gauge",
    "canaryserve_queue_requests": "counter",
    "canaryserve_queue_seconds": "counter",
    "canaryserve_executions": "counter",
    "canaryserve_fallbacks": "counter",
    "canaryserve_sheds": "counter",
    "canaryserve_batch_executions": "counter",
    "canaryserve_version_compute_seconds": "counter",
    "canaryserve_shadow_queue_depth": "gauge",
    "canaryserve_promotion_decisions": "counter",
}


def test_every_family_is_declared_with_help_and_type(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    _, families = exposition
    declared = {name: kind for name, kind, help_text in families if help_text}
    assert declared == TYPES


def test_each_familys_samples_follow_its_own_declaration(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    _, families = exposition
    assert [(name, kind) for name, kind, _ in families] == list(TYPES.items())


def test_exact_request_counts_come_from_the_version_statistics(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    samples, _ = exposition
    exact = by(samples, "canaryserve_inference_requests_total", "model", "version", "result")
    assert exact == {
        ("classifier", "1", "success"): 4,
        ("classifier", "1", "failure"): 0,
        ("classifier", "2", "success"): 70,
        ("classifier", "2", "failure"): 9,
    }


def test_traced_calls_by_code_are_scaled_by_their_sampling_weight(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    samples, _ = exposition
    assert by(samples, "canaryserve_requests_total", "model", "version", "code") == {
        ("classifier", "1", "OK"): 3.0,
        ("classifier", "1", "CANCELLED"): 1.0,
        ("classifier", "2", "OK"): 10.0,
        ("classifier", "2", "INTERNAL"): 10.0,
    }
    # A cancelled call says nothing about the version: not an error.
    assert by(samples, "canaryserve_errors_total", "model", "version") == {
        ("classifier", "1"): 0.0,
        ("classifier", "2"): 10.0,
    }


def test_the_latency_histogram_is_cumulative_up_to_its_count(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    samples, _ = exposition
    buckets = [
        (float(labels["le"]), value)
        for labels, value in samples["canaryserve_request_duration_seconds_bucket"]
        if labels["version"] == "1"
    ]
    assert buckets[-1] == (float("inf"), 4.0)
    assert [le for le, _ in buckets] == sorted(le for le, _ in buckets)
    for le, value in buckets:  # every call took 2 ms
        assert value == (4.0 if le >= 0.002 else 0.0), le
    count = by(samples, "canaryserve_request_duration_seconds_count", "version")
    total = by(samples, "canaryserve_request_duration_seconds_sum", "version")
    assert count == {("1",): 4.0, ("2",): 20.0}
    assert total[("1",)] == pytest.approx(4 * 0.002)
    assert total[("2",)] == pytest.approx(20 * 0.001)


def test_rollouts_show_stages_weights_and_revisions(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    samples, _ = exposition
    assert by(samples, "canaryserve_version_stage", "model", "version", "stage") == {
        ("classifier", "2", "stable"): 1.0,
        ("classifier", "1", "canary"): 1.0,
        (ODD, "1", "stable"): 1.0,
    }
    assert by(samples, "canaryserve_canary_weight_ratio", "model") == {
        ("classifier",): 0.05,
        (ODD,): 0.0,
    }
    assert by(samples, "canaryserve_shadow_rate_ratio", "model")[("classifier",)] == 0.01
    assert by(samples, "canaryserve_rollout_revision", "model") == {
        ("classifier",): 3.0,
        (ODD,): 7.0,
    }


def test_shadow_counters_and_promotion_decisions(
    exposition: tuple[Samples, list[tuple[str, str, str]]],
) -> None:
    samples, _ = exposition
    counts = {
        name: by(samples, f"canaryserve_shadow_{name}_total", "model", "candidate")
        for name in ("sampled", "completed", "dropped", "errors", "timeouts", "disagreements")
    }
    assert counts == {
        "sampled": {("classifier", "1"): 9.0},
        "completed": {("classifier", "1"): 7.0},
        "dropped": {("classifier", "1"): 1.0},
        "errors": {("classifier", "1"): 1.0},
        "timeouts": {("classifier", "1"): 0.0},
        "disagreements": {("classifier", "1"): 2.0},
    }
    assert samples["canaryserve_shadow_queue_depth"] == [({}, 0.0)]
    assert by(samples, "canaryserve_promotion_decisions_total", "model", "action") == {
        ("classifier", "advance"): 2.0,
        ("classifier", "hold"): 5.0,
    }


def test_a_server_with_nothing_to_report_still_parses(shadow: ShadowExecutor) -> None:
    samples, families = parse(render(window_processor(FakeClock()), [], shadow, {}))
    assert [(name, kind) for name, kind, _ in families] == list(TYPES.items())
    assert samples == {"canaryserve_shadow_queue_depth": [({}, 0.0)]}
