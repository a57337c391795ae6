"""Per-version queue and batch metrics in /metrics and ModelStatistics."""

from __future__ import annotations

import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from client.inference import InferenceClient
from server.app import App
from server.shadow.executor import ShadowExecutor
from server.telemetry.metrics import SchedulingSample, render
from server.telemetry.windows import WindowProcessor


def test_render_writes_every_scheduling_family() -> None:
    sample = SchedulingSample(
        "m", "2", queued=3, running=1, queue_count=10, queue_seconds=0.25, executions=4,
        batch_rows={1: 2, 4: 2}, rejected=5, timeouts=6, shadow_shed=7, fallbacks=11,
        run_seconds=0.5,
    )  # fmt: skip
    windows = WindowProcessor(attr_model="m", attr_version="v", attr_code="c", attr_weight="w")
    shadow = ShadowExecutor()
    try:
        text = render(windows, [], shadow, {}, (), [sample])
    finally:
        shadow.shutdown(1)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    at = (("model", "m"), ("version", "2"))
    for name, extra, value in (
        ("canaryserve_queue_depth", (), 3),
        ("canaryserve_instances_busy", (), 1),
        ("canaryserve_queue_requests_total", (), 10),
        ("canaryserve_queue_seconds_total", (), 0.25),
        ("canaryserve_executions_total", (), 4),
        ("canaryserve_fallbacks_total", (), 11),
        ("canaryserve_sheds_total", (("reason", "full"),), 5),
        ("canaryserve_sheds_total", (("reason", "timeout"),), 6),
        ("canaryserve_sheds_total", (("reason", "shadow"),), 7),
        ("canaryserve_batch_executions_total", (("batch_size", "4"),), 2),
        ("canaryserve_version_compute_seconds_total", (), 0.5),
    ):
        assert samples[(name, tuple(sorted(at + extra)))] == value, name


def test_a_served_request_shows_in_metrics_and_statistics(app: App) -> None:
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        for _ in range(3):
            c.infer("classifier", {"input": np.zeros((2, 4), dtype=np.float32)}, version="1")
        [stats] = c.statistics("classifier", "1")
    with urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics") as response:
        text = response.read().decode()
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("version") == "1"
    ]
    at = {"model": "classifier", "version": "1"}
    assert ("canaryserve_queue_requests_total", at, 3.0) in samples
    batched = {**at, "batch_size": "2"}
    assert ("canaryserve_batch_executions_total", batched, 3.0) in samples
    assert stats.inference_stats.queue.count == 3 and stats.execution_count == 3
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(2, 3)]
