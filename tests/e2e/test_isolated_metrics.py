"""/metrics of isolated versions: their load memory is their own process's, their process's
restarts are counted, and an in-process version has neither figure from a child."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from server.serving.isolated import IsolatedRunner
from server.serving.roles import RoleRunner
from tests.support.release import serve
from tests.support.waiting import wait_for


def _samples(text: str, name: str) -> dict[str, float]:
    """The samples of family `name` by version (model classifier)."""
    return {
        s.labels["version"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and s.labels.get("model") == "classifier"
    }


def test_an_isolated_versions_memory_is_its_process_and_its_restarts_are_counted(
    tmp_path: Path,
) -> None:
    app = serve(tmp_path, models={"classifier": {"stable": "1", "candidate_isolation": "process"}})
    try:
        runner = app.registry.get("classifier", "2").runner
        assert isinstance(runner, RoleRunner) and isinstance(runner.inner, IsolatedRunner)
        pid = runner.inner.pid
        assert pid is not None
        text = app.metrics()
        rss = _samples(text, "canaryserve_version_load_rss_bytes")
        # Its own process holds the runtime and the session: tens of MiB, not the server's ~0.
        assert 20 * 2**20 < rss["2"] < 400 * 2**20, rss
        assert rss["1"] < 20 * 2**20, rss  # stable runs in the server's process
        assert _samples(text, "canaryserve_isolated_restarts_total") == {"2": 0.0}

        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: runner.inner.pid not in (None, pid), timeout=60)  # type: ignore[attr-defined]
        restarts = _samples(app.metrics(), "canaryserve_isolated_restarts_total")
        assert restarts == {"2": 1.0}
    finally:
        app.stop(0)


def test_without_isolation_no_restart_series_is_exposed(tmp_path: Path) -> None:
    app = serve(tmp_path)
    try:
        assert "canaryserve_isolated_restarts" not in app.metrics()
    finally:
        app.stop(0)
