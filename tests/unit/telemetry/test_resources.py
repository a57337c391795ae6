"""The server's registry: per-version usage families and the process collectors, read back by
prometheus_client's parsers (text and OpenMetrics)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from server.rollout.state import RolloutState
from server.shadow.executor import ShadowExecutor
from server.telemetry.collectors import SchedulingSample, ServingSources
from server.telemetry.metrics import server_registry
from server.telemetry.resources import UsageCollector, VersionUsage
from server.testing import FakeClock
from tests.support.spans import feed, window_processor
from tests.support.waiting import WAIT

LINUX = sys.platform.startswith("linux")
USAGE = [
    VersionUsage("classifier", "1", load_rss_bytes=4096, cpu_seconds=0.25),
    VersionUsage("classifier", "2", load_rss_bytes=None, cpu_seconds=1.5),
    VersionUsage("wrapped", "1", load_rss_bytes=8192, cpu_seconds=None),
]
#: Every family a server's registry exposes beside the serving ones (test_metrics.py), by the
#: name and type the text format declares.
RESOURCE_TYPES = {
    "canaryserve_version_load_rss_bytes": "gauge",
    "canaryserve_version_cpu_seconds": "counter",
    "canaryserve_process_threads": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "python_info": "gauge",
    "python_gc_objects_collected": "counter",
    "python_gc_objects_uncollectable": "counter",
    "python_gc_collections": "counter",
}


@pytest.fixture
def shadow() -> Iterator[ShadowExecutor]:
    executor = ShadowExecutor()
    yield executor
    assert executor.shutdown(WAIT)


def sources(shadow: ShadowExecutor, run_seconds: float = 0.0) -> ServingSources:
    windows = window_processor(FakeClock(now=1_000.0))
    feed(windows, "classifier", "1", 3, ms=2.0)
    sample = SchedulingSample("classifier", "1", 0, 0, 3, 0.0, 3, {1: 3}, run_seconds=run_seconds)
    return ServingSources(
        windows,
        lambda: [RolloutState(model="classifier", stable="1", revision=1)],
        shadow,
        lambda: {("classifier", "hold"): 1},
        lambda: [("classifier", "1", 3, 0)],
        lambda: [sample],
    )


def values(text: str, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_usage_families_leave_out_what_is_not_known() -> None:
    registry = CollectorRegistry()
    registry.register(UsageCollector(lambda: USAGE))
    text = generate_latest(registry).decode()
    assert values(text, "canaryserve_version_load_rss_bytes") == {
        ("classifier", "1"): 4096.0,
        ("wrapped", "1"): 8192.0,
    }
    assert values(text, "canaryserve_version_cpu_seconds_total") == {
        ("classifier", "1"): 0.25,
        ("classifier", "2"): 1.5,
    }


def test_usage_is_read_at_every_scrape_not_kept() -> None:
    usage = [VersionUsage("m", "1", cpu_seconds=1.0)]
    registry = CollectorRegistry()
    registry.register(UsageCollector(lambda: usage))
    first = values(generate_latest(registry).decode(), "canaryserve_version_cpu_seconds_total")
    usage = [VersionUsage("m", "1", cpu_seconds=3.0), VersionUsage("m", "2", cpu_seconds=0.5)]
    again = values(generate_latest(registry).decode(), "canaryserve_version_cpu_seconds_total")
    assert first == {("m", "1"): 1.0}
    assert again == {("m", "1"): 3.0, ("m", "2"): 0.5}


@pytest.mark.skipif(not LINUX, reason="the process collector reads /proc")
def test_every_family_of_the_servers_registry_has_help_and_its_type(
    shadow: ShadowExecutor,
) -> None:
    text = generate_latest(server_registry(sources(shadow), lambda: USAGE)).decode()
    families = {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}
    assert all(help_text for _, help_text in families.values())
    declared = {name: kind for name, (kind, _) in families.items()}
    assert {name: declared.get(name) for name in RESOURCE_TYPES} == RESOURCE_TYPES
    assert declared["canaryserve_version_compute_seconds"] == "counter"
    assert declared["canaryserve_request_duration_seconds"] == "histogram"


@pytest.mark.skipif(not LINUX, reason="the process collector reads /proc")
def test_process_figures_are_this_processs(shadow: ShadowExecutor) -> None:
    text = generate_latest(server_registry(sources(shadow))).decode()
    rss = values(text, "process_resident_memory_bytes")[()]
    fds = values(text, "process_open_fds")[()]
    threads = values(text, "canaryserve_process_threads")[()]
    assert rss > 10 * 1024 * 1024  # this Python process, numpy loaded
    assert fds >= 3
    assert threads >= threading.active_count()  # OS threads: Python's and native ones


def test_two_servers_in_one_process_keep_their_own_figures(shadow: ShadowExecutor) -> None:
    one = server_registry(sources(shadow, run_seconds=1.0))
    two = server_registry(sources(shadow, run_seconds=2.0))
    name = "canaryserve_version_compute_seconds_total"
    assert values(generate_latest(one).decode(), name) == {("classifier", "1"): 1.0}
    assert values(generate_latest(two).decode(), name) == {("classifier", "1"): 2.0}


def test_openmetrics_exposition_parses_strictly(shadow: ShadowExecutor) -> None:
    """What a Prometheus asking for OpenMetrics gets: the strict parser accepts all of it."""
    text = generate_openmetrics(server_registry(sources(shadow), lambda: USAGE)).decode()
    families = {f.name: f for f in parse_openmetrics(text)}
    latency = families["canaryserve_request_duration_seconds"]
    count = [s.value for s in latency.samples if s.name.endswith("_count")]
    assert count == [3.0]
    cpu = families["canaryserve_version_cpu_seconds"]
    assert cpu.type == "counter"
    assert {s.name for s in cpu.samples} == {"canaryserve_version_cpu_seconds_total"}
