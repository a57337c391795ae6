"""Per-version queue and batch metrics in /metrics and ModelStatistics."""

from __future__ import annotations

import urllib.request

import numpy as np

from client.inference import InferenceClient
from server.app import App
from server.shadow.executor import ShadowExecutor
from server.telemetry.metrics import SchedulingSample, render
from server.telemetry.windows import WindowProcessor


def test_render_writes_every_scheduling_family() -> None:
    sample = SchedulingSample(
        "m", "2", queued=3, running=1, queue_count=10, queue_seconds=0.25, executions=4,
        batch_rows={1: 2, 4: 2}, rejected=5, timeouts=6, shadow_shed=7, fallbacks=11,
    )  # fmt: skip
    windows = WindowProcessor(attr_model="m", attr_version="v", attr_code="c", attr_weight="w")
    shadow = ShadowExecutor()
    try:
        text = render(windows, [], shadow, {}, (), [sample])
    finally:
        shadow.shutdown(1)
    for line in (
        'canaryserve_queue_depth{model="m",version="2"} 3',
        'canaryserve_instances_busy{model="m",version="2"} 1',
        'canaryserve_queue_requests_total{model="m",version="2"} 10',
        'canaryserve_queue_seconds_total{model="m",version="2"} 0.25',
        'canaryserve_executions_total{model="m",version="2"} 4',
        'canaryserve_fallbacks_total{model="m",version="2"} 11',
        'canaryserve_sheds_total{model="m",version="2",reason="full"} 5',
        'canaryserve_sheds_total{model="m",version="2",reason="timeout"} 6',
        'canaryserve_sheds_total{model="m",version="2",reason="shadow"} 7',
        'canaryserve_batch_executions_total{model="m",version="2",batch_size="4"} 2',
    ):
        assert line in text.splitlines(), line


def test_a_served_request_shows_in_metrics_and_statistics(app: App) -> None:
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        for _ in range(3):
            c.infer("classifier", {"input": np.zeros((2, 4), dtype=np.float32)}, version="1")
        [stats] = c.statistics("classifier", "1")
    with urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics") as response:
        text = response.read().decode()
    lines = text.splitlines()
    assert 'canaryserve_queue_requests_total{model="classifier",version="1"} 3' in lines
    assert (
        'canaryserve_batch_executions_total{model="classifier",version="1",batch_size="2"} 3'
        in lines
    )
    assert stats.inference_stats.queue.count == 3 and stats.execution_count == 3
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(2, 3)]
