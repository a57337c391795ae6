"""Drills: a copy of stable with injected faults, rolled out with guard rails — caught?"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client.cli import main
from client.errors import ClientError
from server.serving.faults import FaultyRunner, InjectedFault
from tests.support.release import FAST, TOKEN, Load, admin, serve


def test_faulty_runner_injects_only_what_it_is_told() -> None:
    draws = iter([0.01, 0.5, 0.049999, 0.05])
    slept: list[float] = []
    runner = FaultyRunner(
        _Echo(), error_ppm=50_000, added_latency_ms=20.0, draw=lambda: next(draws),
        sleep=slept.append,
    )  # fmt: skip
    outcomes = []
    for _ in range(4):
        try:
            runner.run(["y"], {"x": np.zeros(1, np.float32)})
            outcomes.append("ok")
        except InjectedFault:
            outcomes.append("fault")
    assert outcomes == ["fault", "ok", "fault", "ok"] and slept == [0.02] * 4


class _Echo:
    signature = None

    def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(feeds.values())


def test_an_error_drill_is_caught_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = serve(tmp_path, models={"classifier": {"stable": "1", "promotion": FAST}})
    target = f"127.0.0.1:{app.port}"
    try:
        with Load(app) as load:
            code = main(
                ["--target", target, "drill", "classifier", "--inject", "errors=10%",
                 "--weight", "30", "--duration", "60", "--token", TOKEN, "--json"]
            )  # fmt: skip
        report = json.loads(capsys.readouterr().out)
        with admin(app) as ops:
            rollout = ops.get("classifier")
            audit = ops.audit("classifier")
        versions = {mv.version for mv in app.registry.index() if mv.model == "classifier"}
    finally:
        app.stop(0)
    assert code == 0 and report["caught"] is True
    assert 0 < report["seconds_to_rollback"] < 60
    assert report["candidate_requests"] > 0
    assert 0 < report["callers_affected"] <= report["candidate_requests"]
    assert report["callers_affected"] <= load.failed
    assert rollout.stable_version == "1" and not rollout.candidate_version
    assert versions == {"1", "2"}, "the drill's copy is gone"
    acts = [e.operation for e in audit if e.operation != "guard_hold"]
    assert acts[-3:] == ["drill_start", "guard_rollback", "drill_report"]
    start = json.loads(next(e for e in audit if e.operation == "drill_start").extra_json)["drill"]
    assert start == {"version": "3", "copy_of": "1", "error_rate_ppm": 100_000,
                     "added_latency_ms": 0.0}  # fmt: skip
    assert json.loads(audit[-1].extra_json) == report
    assert "caught by the guard rails" in audit[-1].reason


def test_a_drill_the_guard_rails_miss_is_ended_and_reported(tmp_path: Path) -> None:
    app = serve(tmp_path, models={"classifier": {"stable": "1", "promotion": FAST}})
    try:
        with admin(app) as ops:
            with pytest.raises(ClientError, match="injects something"):
                ops.start_drill("classifier")
            started = ops.start_drill("classifier", added_latency_ms=1.0, canary_ppm=200_000)
            assert started.rollout.candidate_version == started.drill_version == "3"
            assert started.rollout.guarded
            with pytest.raises(ClientError, match="has a drill running"):
                ops.start_drill("classifier", error_ppm=1000)
            with Load(app):
                ended = ops.end_drill("classifier", reason="game day")
            audit = ops.audit("classifier")
            with pytest.raises(ClientError, match="no drill running"):
                ops.end_drill("classifier")
    finally:
        app.stop(0)
    assert not ended.caught and ended.seconds_to_rollback == 0.0
    assert ended.rollout.phase == 4 and ended.rollout.last_candidate_version == "3"
    assert [e.operation for e in audit][-3:] == ["drill_start", "drill_end", "drill_report"]
    assert "NOT caught" in audit[-1].reason and "(game day)" in audit[-1].reason
