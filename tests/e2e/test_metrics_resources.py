"""/metrics of a real server as prometheus_client renders it: the process's and each version's
resource figures, every family documented, OpenMetrics on request, and a failing collector
that fails only its scrape."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from client.inference import InferenceClient
from models.build import build_classifier_slow
from server.app import App
from tests.support.servers import start_app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
OPENMETRICS = "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3"


def scrape(app: App, accept: str | None = None) -> tuple[str, str]:
    """The body and its Content-Type."""
    headers = {"Accept": accept} if accept else {}
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.read().decode(), r.headers["Content-Type"]


def families(app: App) -> dict[str, Metric]:
    """Every family by its exposed name (a counter's with `_total`, as the docs list them)."""
    text, _ = scrape(app)
    return {
        f.name + ("_total" if f.type == "counter" else ""): f
        for f in text_string_to_metric_families(text)
    }


def value(family: Metric, suffix: str = "", **labels: str) -> float:
    [v] = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == x for k, x in labels.items())
    ]
    return v


def documented() -> dict[str, str]:
    """The reference table of docs/metrics.md: family name -> type."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \|", DOCS.read_text(encoding="utf-8"), re.M)
    return dict(rows)


def call(app: App, version: str, n: int) -> None:
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        for _ in range(n):
            c.infer("classifier", {"input": np.ones((1, 4), np.float32)}, version=version)


def test_the_process_reports_its_own_resources(app: App) -> None:
    f = families(app)
    assert value(f["process_resident_memory_bytes"]) > 20 * 1024 * 1024  # onnxruntime loaded
    assert value(f["process_virtual_memory_bytes"]) >= value(f["process_resident_memory_bytes"])
    assert value(f["process_open_fds"]) > 3  # listening sockets, the state database, ...
    assert value(f["process_cpu_seconds_total"], "_total") > 0
    assert time.time() - 86_400 < value(f["process_start_time_seconds"]) <= time.time()
    assert value(f["canaryserve_process_threads"]) >= 8  # gRPC workers at least


def test_a_versions_compute_and_cpu_seconds_grow_with_its_calls(app: App) -> None:
    call(app, "1", 1)
    before = families(app)
    call(app, "1", 40)  # 16 runs or more: the CPU sampler has measured some
    after = families(app)
    at = {"model": "classifier", "version": "1"}

    def grown(name: str, suffix: str = "_total") -> float:
        return value(after[name], suffix, **at) - value(before[name], suffix, **at)

    assert grown("canaryserve_executions_total") == 40
    compute = grown("canaryserve_version_compute_seconds_total")
    assert 0 < compute < 40 * 0.5  # 40 runs of a tiny model: far below 0.5 s each
    cpu = value(after["canaryserve_version_cpu_seconds_total"], "_total", **at)
    assert cpu > 0


def test_every_loaded_version_reports_its_load_memory(app: App) -> None:
    f = families(app)
    rss = {(s.labels["model"], s.labels["version"]): s.value for s in f[
        "canaryserve_version_load_rss_bytes"].samples}  # fmt: skip
    ready = {(mv.model, mv.version) for mv in app.registry.index() if mv.runner is not None}
    assert set(rss) == ready
    assert all(v >= 0 for v in rss.values())


def test_a_version_holding_64_mib_of_weights_shows_them_as_its_load_memory(
    tmp_path: Path,
) -> None:
    app = start_app(tmp_path, admin_tokens={"ops": "m"})
    try:
        # Its 4096 x 4096 float weights are made by onnxruntime's constant folding at load.
        build_classifier_slow(app.registry.root / "classifier" / "9" / "model.onnx", 4096)
        admin = [("authorization", "Bearer m")]
        with InferenceClient(f"127.0.0.1:{app.port}", metadata=admin) as c:
            c.load("classifier")
        rss = families(app)["canaryserve_version_load_rss_bytes"]
        heavy = value(rss, model="classifier", version="9")
        light = value(rss, model="classifier", version="2")
    finally:
        app.stop(0)
    assert 48 * 2**20 < heavy < 256 * 2**20, heavy
    assert light < 8 * 2**20, light


def test_every_exposed_family_is_documented_with_its_type_and_help(app: App) -> None:
    exposed = families(app)
    docs = documented()
    assert {name: f.type for name, f in exposed.items()} == {
        name: docs.get(name) for name in exposed
    }, "a family is missing from docs/metrics.md, or has another type there"
    # Only with webhooks configured: the notification families (tests/e2e/test_notifications);
    # only with a version in a process of its own: the isolated ones (test_isolated_metrics).
    conditional = {
        name
        for name in docs
        if name.startswith(("canaryserve_notifications_", "canaryserve_isolated_"))
    }
    assert set(docs) - conditional == set(exposed), (
        "docs/metrics.md lists a family the server does not expose"
    )
    assert all(f.documentation for f in exposed.values())


def test_a_scraper_asking_for_openmetrics_gets_it(app: App) -> None:
    text, content_type = scrape(app, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    names = {f.name for f in parse_openmetrics(text)}  # the strict parser: raises on any flaw
    assert {"canaryserve_requests", "process_resident_memory_bytes"} <= names
    _, plain = scrape(app)
    assert plain == "text/plain; version=0.0.4; charset=utf-8"


class Broken(Collector):
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("this collector is broken")


def test_a_failing_collector_fails_its_scrape_not_the_server(app: App) -> None:
    broken = Broken()
    app.metrics_registry.register(broken)
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            scrape(app)
        failed.value.close()
        assert failed.value.code == 500
        call(app, "2", 1)  # inference goes on
    finally:
        app.metrics_registry.unregister(broken)
    assert "canaryserve_requests_total" in scrape(app)[0]
