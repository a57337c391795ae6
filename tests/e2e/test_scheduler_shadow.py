"""Shadow work uses idle capacity: shed only when the primary needs it, and say why."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.admin import AdminClient
from client.inference import InferenceClient
from server.app import App
from server.shadow.executor import ShadowExecutor
from server.shadow.headroom import CpuMeter
from server.shadow.job import Shed
from server.shadow.stats import ShadowStats
from server.testing import FakeClock, FakeRunner
from tests.conftest import start_app
from tests.unit.shadow.test_executor import WAIT, job

TOKEN = "shadow"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def stats_of(executor: ShadowExecutor) -> ShadowStats:
    stats = executor.stats("m")
    assert stats is not None
    return stats


def test_no_budget_by_default_and_every_job_runs_when_nothing_presses() -> None:
    executor = ShadowExecutor(workers=1, queue_size=64, timeout_s=60, pressure=lambda m, _: None)
    runner = FakeRunner()
    for i in range(500):  # submitted one at a time, as a lone client would
        assert executor.submit(job(runner, i))
        assert executor.force_flush(WAIT)
    report = stats_of(executor).snapshot()
    assert (report.sampled, report.completed, report.dropped) == (500, 500, 0)
    assert executor.shutdown(WAIT)


def test_a_primary_queue_sheds_at_submit_and_the_report_says_why() -> None:
    pressed = {"m": "primary_queued"}
    executor = ShadowExecutor(
        workers=1, queue_size=8, timeout_s=60, pressure=lambda m, _: pressed.get(m)
    )
    assert not executor.submit(job(FakeRunner(), 0))
    pressed.clear()
    assert executor.submit(job(FakeRunner(), 1))
    assert executor.force_flush(WAIT)
    report = stats_of(executor).snapshot()
    assert report.dropped_by_reason == {"primary_queued": 1}
    assert (report.sampled, report.submitted, report.completed) == (2, 1, 1)
    assert report.as_dict()["dropped_by_reason"] == {"primary_queued": 1}
    assert executor.shutdown(WAIT)


def test_a_queued_job_is_shed_when_the_primary_needs_the_capacity_at_pickup(
    gate: threading.Event,
) -> None:
    pressed: dict[str, str] = {}
    executor = ShadowExecutor(
        workers=1, queue_size=8, timeout_s=60, pressure=lambda m, _: pressed.get(m)
    )
    runner = FakeRunner(gate=gate)
    assert executor.submit(job(runner, 0))
    assert runner.started.wait(WAIT)
    assert executor.submit(job(runner, 1))
    pressed["m"] = "primary_queued"
    gate.set()
    assert executor.force_flush(WAIT)
    stats = stats_of(executor)
    assert (stats.completed, stats.dropped, stats.submitted, stats.sampled) == (1, 1, 1, 2)
    assert runner.calls == 1
    assert executor.shutdown(WAIT)


def test_a_busy_candidate_scheduler_is_a_drop_not_an_error() -> None:
    executor = ShadowExecutor(workers=1, queue_size=8, timeout_s=60)
    assert executor.submit(job(FakeRunner(error=Shed("candidate_busy")), 0))
    assert executor.force_flush(WAIT)
    report = stats_of(executor).snapshot()
    assert (report.errors, report.dropped, report.completed) == (0, 1, 0)
    assert report.dropped_by_reason == {"candidate_busy": 1}
    assert executor.shutdown(WAIT)


def test_a_full_shadow_queue_says_queue_full(gate: threading.Event) -> None:
    executor = ShadowExecutor(workers=1, queue_size=1, timeout_s=60)
    runner = FakeRunner(gate=gate)
    assert executor.submit(job(runner, 0))
    assert runner.started.wait(WAIT)
    assert executor.submit(job(runner, 1))
    assert not executor.submit(job(runner, 2))
    gate.set()
    assert executor.force_flush(WAIT)
    assert stats_of(executor).snapshot().dropped_by_reason == {"queue_full": 1}
    assert executor.shutdown(WAIT)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(tmp_path, admin_tokens={"ops": TOKEN}, models={"classifier": {"stable": "1"}})
    yield app
    app.stop(0)


def test_one_client_with_idle_cores_gets_every_sampled_request_compared(server: App) -> None:
    target = f"127.0.0.1:{server.port}"
    with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
        admin.start("classifier", "2", shadow_ppm=1_000_000)
        rng = np.random.default_rng(0)
        pace = threading.Event()  # never set: waits pace one client at about 400 calls/s
        with InferenceClient(target) as c:
            for i in range(600):
                x = rng.standard_normal((1, 4)).astype(np.float32)
                assert c.infer("classifier", {"input": x}, routing_key=f"k{i}").version == "1"
                pace.wait(0.0025)
        assert server.shadow.force_flush(WAIT)
        report = json.loads(admin.shadow_report("classifier").report_json)
    assert report["sampled"] == 600
    assert report["completed"] >= 0.99 * report["sampled"], report["dropped_by_reason"]


def test_shadow_yields_while_another_call_is_served(server: App) -> None:
    assert server._shadow_pressure("classifier", at_submit=False) is None
    server.dataplane.in_flight += 1
    try:  # a job runs only on an idle data plane; at submit, its own call is still in flight
        assert server._shadow_pressure("classifier", at_submit=False) == "primary_busy"
        assert server._shadow_pressure("classifier", at_submit=True) is None
        server.dataplane.in_flight += 1
        assert server._shadow_pressure("classifier", at_submit=True) == "primary_busy"
    finally:
        server.dataplane.in_flight -= 2
    assert server.dataplane.in_flight == 0


def test_the_cpu_meter_reports_busy_only_above_its_share_of_the_cores() -> None:
    wall, cpu = FakeClock(), FakeClock()
    meter = CpuMeter(0.5, window_s=0.05, cores=2, wall=wall, cpu=cpu)
    assert not meter.busy()
    wall.advance(0.1)
    cpu.advance(0.12)  # 0.12 s of CPU in 0.1 s on 2 cores: 60 %
    assert meter.busy() and meter.share == pytest.approx(0.6)
    wall.advance(0.01)
    cpu.advance(0.0)
    assert meter.busy()  # the window is not over: the last share stands
    wall.advance(0.09)
    cpu.advance(0.02)  # 0.02 s in the 0.1 s since: 10 %
    assert not meter.busy() and meter.share == pytest.approx(0.1)
