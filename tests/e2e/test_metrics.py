"""The Prometheus endpoint, scraped over HTTP and parsed by prometheus_client's parser."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from client.admin import AdminClient
from client.inference import InferenceClient
from tests.support.servers import start_app


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        samples.setdefault(family.name, [])
    return samples


def test_metrics_expose_versions_rollouts_and_shadow(tmp_path: Path) -> None:
    app = start_app(
        tmp_path, admin_tokens={"ops": "m"}, stable_trace_ratio=1.0, idle_trace_ratio=1.0
    )
    try:
        target = f"127.0.0.1:{app.port}"
        with InferenceClient(target) as c:
            for _ in range(3):
                c.infer("classifier", {"input": np.zeros((1, 4), np.float32)}, version="1")
            c.infer("classifier", {"input": np.zeros((1, 4), np.float32)})
        with AdminClient(grpc.insecure_channel(target), "m") as admin:
            admin.start("classifier", "1", canary_ppm=50_000, shadow_ppm=10_000)
        metrics = _scrape(app.metrics_port)
    finally:
        app.stop(0)
    requests = {
        (labels["version"], labels["code"]): value
        for labels, value in metrics["canaryserve_requests_total"]
        if labels["model"] == "classifier"
    }
    assert requests == {("1", "OK"): 3.0, ("2", "OK"): 1.0}
    exact = {
        (labels["version"], labels["result"]): value
        for labels, value in metrics["canaryserve_inference_requests_total"]
        if labels["model"] == "classifier"
    }
    assert exact == {
        ("1", "success"): 3,
        ("1", "failure"): 0,
        ("2", "success"): 1,
        ("2", "failure"): 0,
    }
    counts = {
        labels["version"]: value
        for labels, value in metrics["canaryserve_request_duration_seconds_count"]
    }
    assert counts["1"] == 3.0
    weights = {
        labels["model"]: value for labels, value in metrics["canaryserve_canary_weight_ratio"]
    }
    assert weights["classifier"] == 0.05
    stages = {
        (labels["version"], labels["stage"])
        for labels, _ in metrics["canaryserve_version_stage"]
        if labels["model"] == "classifier"
    }
    assert stages == {("2", "stable"), ("1", "canary")}
    assert "canaryserve_shadow_queue_depth" in metrics
