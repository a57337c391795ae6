"""Unloading a version frees what it held: an isolated version's process and shared-memory
buffer, an in-process version's session, and its scheduling series; a call in flight during
the unload completes or fails UNAVAILABLE, never hangs."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.errors import ClientError
from client.inference import InferenceClient
from models.build import build_classifier_slow
from server.app import App
from server.serving.isolated import IsolatedRunner
from server.serving.roles import RoleRunner
from tests.support.release import admin, serve
from tests.support.waiting import wait_for

SCHEDULING = ("canaryserve_queue_depth", "canaryserve_instances_busy", "canaryserve_executions")


def _series_of(app: App, version: str) -> list[str]:
    """The scheduling series of classifier `version` on /metrics."""
    label = f'version="{version}"'
    return [
        line
        for line in app.metrics().splitlines()
        if line.startswith(SCHEDULING) and label in line and 'model="classifier"' in line
    ]


def _call(app: App, version: str, rows: int = 1) -> str:
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        x = np.ones((rows, 4), np.float32)
        return c.infer("classifier", {"input": x}, version=version, timeout=60).version


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[App]:
    app = serve(tmp_path, models={"classifier": {"stable": "1", "isolation": "process"}})
    yield app
    app.stop(0)


def test_unloading_an_isolated_version_ends_its_process_buffer_and_series(isolated: App) -> None:
    app = isolated
    build_classifier_slow(app.registry.root / "classifier" / "3" / "model.onnx", 4096)
    with admin(app) as a:
        a.load("classifier", "3")
        runner = app.registry.get("classifier", "3").runner
        assert isinstance(runner, RoleRunner) and isinstance(runner.inner, IsolatedRunner)
        pid = runner.inner.pid
        assert pid is not None and os.path.exists(f"/proc/{pid}")
        shm = Path("/dev/shm") / runner.inner._supervisor.buffer.name
        assert shm.exists()
        assert _call(app, "3") == "3"
        assert _series_of(app, "3")

        outcome: list[object] = []
        slow = threading.Thread(target=lambda: outcome.append(_try(app, "3", rows=512)))
        slow.start()
        scheduler = app.schedulers.find("classifier", "3")
        assert scheduler is not None
        wait_for(lambda: scheduler.running() == 1, message="the slow call runs")
        a.unload("classifier", "3", reason="test")
        slow.join(timeout=60)
        assert not slow.is_alive(), "the call in flight hung"

    assert outcome in (["3"], ["UNAVAILABLE"]), outcome
    assert not os.path.exists(f"/proc/{pid}")  # ended and reaped
    assert not shm.exists()
    assert _series_of(app, "3") == []
    assert app.schedulers.find("classifier", "3") is None
    with pytest.raises(ClientError) as refused:
        _call(app, "3")
    assert refused.value.code == "UNAVAILABLE" and "unloaded" in refused.value.details
    assert _call(app, "1") == "1"  # the others serve on


def _try(app: App, version: str, rows: int) -> str:
    try:
        return _call(app, version, rows)
    except ClientError as exc:
        return exc.code


def test_unloading_an_in_process_version_drops_its_session_and_series(tmp_path: Path) -> None:
    app = serve(tmp_path)
    try:
        assert _call(app, "2") == "2"
        runner = app.registry.get("classifier", "2").runner
        assert isinstance(runner, RoleRunner) and not runner.closed
        assert _series_of(app, "2")
        with admin(app) as a:
            a.unload("classifier", "2", reason="test")
        assert runner.closed
        assert _series_of(app, "2") == []
        with admin(app) as a:
            a.load("classifier", "2")
        assert _call(app, "2") == "2"  # loaded again: a new session serves
    finally:
        app.stop(0)
