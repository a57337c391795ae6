"""Containment end to end: a candidate in its own process survives `kill -9` without a failed
call, a candidate that needs 1 GiB per call is held to its memory budget and rolled back, and
an isolated stable version answers UNAVAILABLE while its process restarts."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.errors import ClientError
from client.inference import InferenceClient
from models.build import build_classifier_hungry, build_classifier_slow
from server.app import App
from server.serving.isolated import IsolatedRunner
from server.serving.roles import RoleRunner
from tests.support.release import FAST_POLICY, admin, reload, serve
from tests.support.waiting import wait_for

#: Roll a failing candidate back fast; the latency gate is loose, so only errors decide.
POLICY = {
    **FAST_POLICY,
    "steps": [500_000],
    "max_error_rate_increase": 0.01,
    "max_latency_p99_ratio": 10_000.0,
}


class Load:
    """Keyed closed-loop callers until stopped; every answer (version, stage, reason) kept."""

    def __init__(self, app: App, threads: int = 4) -> None:
        self.target = f"127.0.0.1:{app.port}"
        self.stop = threading.Event()
        self.answers: list[tuple[str, str, str]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]

    def _run(self, thread: int) -> None:
        rng = np.random.default_rng(thread)
        with InferenceClient(self.target) as c:
            i = 0
            while not self.stop.is_set():
                x = rng.standard_normal((1, 4)).astype(np.float32)
                try:
                    r = c.infer("classifier", {"input": x}, routing_key=f"u{thread}-{i}")
                except ClientError as exc:
                    with self.lock:
                        self.errors.append(str(exc))
                else:
                    with self.lock:
                        self.answers.append((r.version, r.stage, r.reason))
                i += 1

    def count(self, reason: str, version: str | None = None) -> int:
        with self.lock:
            return sum(1 for v, _, r in self.answers if r == reason and version in (None, v))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _runner(app: App, version: str) -> RoleRunner:
    runner = app.registry.get("classifier", version).runner
    assert isinstance(runner, RoleRunner)
    return runner


def _child_pid(app: App, version: str) -> int | None:
    inner = _runner(app, version).inner
    return inner.pid if isinstance(inner, IsolatedRunner) else None


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.fixture
def isolated_candidate(tmp_path: Path) -> Iterator[App]:
    app = serve(
        tmp_path,
        workers=16,
        models={"classifier": {"stable": "1", "candidate_isolation": "process"}},
    )
    yield app
    app.stop(0)


def test_kill_9_of_the_candidates_process_fails_no_call(isolated_candidate: App) -> None:
    app = isolated_candidate
    assert _child_pid(app, "1") is None  # stable runs in the server's process
    first = _child_pid(app, "2")
    assert first is not None
    with admin(app) as a:
        a.start("classifier", "2", canary_ppm=500_000, no_guard=True)
    with Load(app) as load:
        wait_for(lambda: load.count("hash", "2") >= 20, message="the candidate serves")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: load.count("candidate_crashed") >= 1, message="calls fall back")
        restarted = wait_for(
            lambda: (pid := _child_pid(app, "2")) not in (None, first) and pid, timeout=60
        )
        served = load.count("hash", "2")
        wait_for(lambda: load.count("hash", "2") >= served + 20, message="it serves again")
    assert load.errors == []  # not one call failed, stable's or the candidate's
    crashed = [a for a in load.answers if a[2] == "candidate_crashed"]
    assert all(version == "1" and stage == "stable" for version, stage, _ in crashed)
    # A loaded machine can also shed a few candidate calls on its queue timeout: fallbacks too.
    overloaded = [a for a in load.answers if a[2] == "candidate_overloaded"]
    scheduler = app.schedulers.find("classifier", "2")
    assert scheduler is not None
    assert scheduler.stats.fallbacks == len(crashed) + len(overloaded)
    assert restarted != first and _runner(app, "2").inner.restarts == 1  # type: ignore[attr-defined]


def test_a_candidate_over_its_memory_budget_is_held_and_rolled_back(tmp_path: Path) -> None:
    app = serve(
        tmp_path,
        workers=16,
        models={
            "classifier": {
                "stable": "1",
                "candidate_isolation": "process",
                "memory_budget_mb": 512,
            }
        },
    )
    try:
        build_classifier_hungry(app.config.models_dir / "classifier" / "5" / "model.onnx", 1024)
        reload(app)
        child = _child_pid(app, "5")
        assert child is not None
        before = _rss_mib(os.getpid())
        with admin(app) as a:
            a.start("classifier", "5", automatic=True, policy_json=json.dumps(POLICY))
            with Load(app) as load:
                wait_for(lambda: not a.get("classifier").candidate_version, timeout=60)
            final = a.get("classifier")
            explained = a.explain("classifier")
        assert load.errors == []  # stable served every call, the candidate's too
        over = [x for x in load.answers if x[2] == "candidate_over_budget"]
        assert over and all(version == "1" for version, _, _ in over)
        assert final.stable_version == "1" and final.last_candidate_version == "5"
        gate = next(check for check in explained.checks if check.name == "error_rate")
        assert gate.status == "fail"
        assert _child_pid(app, "5") == child  # a refused run does not cost the process
        assert _rss_mib(child) < 512
        assert _rss_mib(os.getpid()) - before < 200  # the 1 GiB never reached the server
    finally:
        app.stop(0)


def test_an_isolated_stable_version_is_unavailable_while_it_restarts(tmp_path: Path) -> None:
    app = serve(tmp_path, models={"classifier": {"stable": "1", "isolation": "process"}})
    try:
        pid = _child_pid(app, "1")
        assert pid is not None
        x = np.ones((1, 4), np.float32)
        with InferenceClient(f"127.0.0.1:{app.port}") as c:
            expected = c.infer("classifier", {"input": x}).outputs["scores"]
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ClientError) as err:
                wait_for(lambda: _child_pid(app, "1") is None)
                c.infer("classifier", {"input": x})
            assert err.value.code == "UNAVAILABLE"
            assert "isolated process" in str(err.value) and "restarting" in str(err.value)
            wait_for(lambda: _child_pid(app, "1") not in (None, pid), timeout=60)
            again = c.infer("classifier", {"input": x}).outputs["scores"]
        np.testing.assert_array_equal(again, expected)
    finally:
        app.stop(0)


def test_bytes_tensors_cross_into_an_isolated_process(tmp_path: Path) -> None:
    app = serve(tmp_path, models={"shouter": {"isolation": "process"}})
    try:
        assert isinstance(app.registry.get("shouter", "1").runner.inner, IsolatedRunner)  # type: ignore[union-attr]
        with InferenceClient(f"127.0.0.1:{app.port}") as c:
            text = np.array([b"abc", "héllo".encode(), b"\xff\x00z", b""], dtype=object)
            out = c.infer("shouter", {"text": text}).outputs["upper"]
        assert list(out) == [b"ABC", "HéLLO".encode(), b"\xff\x00Z", b""]
    finally:
        app.stop(0)


def test_a_promoted_candidate_moves_into_the_servers_process(isolated_candidate: App) -> None:
    app = isolated_candidate
    child = _child_pid(app, "2")
    assert child is not None
    with admin(app) as a, Load(app) as load:
        a.start("classifier", "2", canary_ppm=500_000, no_guard=True)
        wait_for(lambda: load.count("hash", "2") >= 20, message="the candidate serves")
        a.transition("promote", "classifier")
        wait_for(lambda: not isinstance(_runner(app, "2").inner, IsolatedRunner), timeout=60)
        wait_for(lambda: isinstance(_runner(app, "1").inner, IsolatedRunner), timeout=60)
        served = load.count("no_rollout", "2")
        wait_for(lambda: load.count("no_rollout", "2") >= served + 20, message="it serves")
    assert load.errors == []  # the moves cost no call
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child))


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1].startswith("Z")


def test_shadow_runs_of_an_isolated_candidate_run_in_its_process(isolated_candidate: App) -> None:
    app = isolated_candidate
    assert _child_pid(app, "2") is not None  # version 2's only session is in its process
    with admin(app) as a:
        a.start("classifier", "2", shadow_ppm=1_000_000, no_guard=True)
        with InferenceClient(f"127.0.0.1:{app.port}") as c:
            rng = np.random.default_rng(0)
            for i in range(20):
                x = rng.standard_normal((1, 4)).astype(np.float32)
                assert c.infer("classifier", {"input": x}, routing_key=f"k{i}").version == "1"
        report = wait_for(lambda: (r := a.shadow_report("classifier")).completed >= 5 and r)
    assert report.candidate_version == "2"


def test_an_isolated_version_that_cannot_load_or_breaks_its_budget_says_why(
    tmp_path: Path,
) -> None:
    settings = {"stable": "1", "isolation": "process", "memory_budget_mb": 256}
    app = serve(tmp_path, models={"classifier": settings})
    try:
        broken = app.config.models_dir / "classifier" / "7" / "model.onnx"
        broken.parent.mkdir()
        broken.write_bytes(b"not an onnx file")
        # Its hidden weights (8192 x 8192 floats, 256 MiB) are made by every run.
        build_classifier_slow(app.config.models_dir / "classifier" / "8" / "model.onnx", 8192)
        with pytest.raises(ClientError):
            reload(app)  # the repository load reports the version that failed
        seven = app.registry.versions("classifier")["7"]
        assert seven.state.value == "UNAVAILABLE" and "failed to load" in seven.reason
        assert "Protobuf parsing failed" in seven.reason
        pid = _child_pid(app, "8")
        x = np.ones((1, 4), np.float32)
        with InferenceClient(f"127.0.0.1:{app.port}") as c:
            with pytest.raises(ClientError) as err:
                c.infer("classifier", {"input": x}, version="8")  # pinned: no fallback
            assert err.value.code == "RESOURCE_EXHAUSTED"
            assert "memory budget (256 MiB, memory_budget_mb)" in err.value.details
            assert c.infer("classifier", {"input": x}).version == "1"  # the others serve on
        assert _child_pid(app, "8") == pid  # and the refused version's process lives on
    finally:
        app.stop(0)
