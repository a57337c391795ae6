"""Undo after promotion: one stage-machine command restores the previous stable in the grace."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from client.cli import main
from client.errors import ClientError
from server.errors import InvalidTransition
from server.rollout.state import (
    Phase,
    Promote,
    RolloutState,
    StartRollout,
    Undo,
    apply,
    initial_state,
)
from tests.support.release import TOKEN, admin, serve

NOW = 1_000.0
GRACE = 300.0
READY = frozenset({"1", "2", "3"})
CANARY = dataclasses.replace(
    initial_state("m", "1", 10.0),
    candidate="2",
    phase=Phase.CANARY,
    canary_ppm=50_000,
    salt="s",
    rollout_id=1,
    revision=3,
)


def run(
    state: RolloutState, command: Undo | Promote | StartRollout, now: float = NOW
) -> RolloutState:
    return apply(state, command, now=now, new_salt="s2", ready=READY, grace_seconds=GRACE)


def test_undo_restores_the_previous_stable_in_one_change() -> None:
    promoted = run(CANARY, Promote())
    assert promoted.stable == "2" and promoted.previous_stable == "1"
    undone = run(promoted, Undo(), now=NOW + GRACE)  # the last moment of the grace period
    assert undone.stable == "1" and undone.phase is Phase.ROLLED_BACK
    assert undone.last_candidate == "2" and undone.previous_stable is None
    assert undone.revision == promoted.revision + 1 and undone.updated_at == NOW + GRACE
    assert RolloutState.from_json(undone.to_json()) == undone


@pytest.mark.parametrize(
    ("state", "now", "ready", "why"),
    [
        (initial_state("m", "1", 0.0), NOW, READY, "there is no promotion to undo"),
        (CANARY, NOW, READY, "candidate '2' is active; roll it back first"),
        (None, NOW + GRACE + 1, READY, "grace period after promoting '2' ended 1 s ago"),
        (None, NOW, frozenset({"2"}), "previous stable '1' is not loaded and ready"),
    ],
)
def test_undo_is_refused_with_a_reason(
    state: RolloutState | None, now: float, ready: frozenset[str], why: str
) -> None:
    state = state or run(CANARY, Promote())
    with pytest.raises(InvalidTransition, match=why):
        apply(state, Undo(), now=now, new_salt="x", ready=ready, grace_seconds=GRACE)


def test_undo_twice_is_refused() -> None:
    undone = run(run(CANARY, Promote()), Undo())
    with pytest.raises(InvalidTransition, match="no promotion to undo"):
        run(undone, Undo())


# -- end to end ------------------------------------------------------------------------------


def test_rollout_undo_restores_the_previous_stable_in_one_audited_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = serve(tmp_path)
    target = f"127.0.0.1:{app.port}"
    try:
        with admin(app) as ops:
            ops.start("classifier", "2", canary_ppm=100_000)
            promoted = ops.transition("promote", "classifier")
            assert (promoted.stable_version, promoted.previous_stable_version) == ("2", "1")
        cli = ["--target", target, "rollout", "undo", "classifier", "--token", TOKEN]
        assert main([*cli, "--reason", "v2 hurts checkout", "--json"]) == 0
        undone = json.loads(capsys.readouterr().out)
        assert undone["stable_version"] == "1" and undone["phase"] == "PHASE_ROLLED_BACK"
        assert undone["last_candidate_version"] == "2"
        with admin(app) as ops:
            rows = ops.audit("classifier")
            assert ops.route("classifier", "user-1").version == "1"
            with pytest.raises(ClientError) as again:
                ops.transition("undo", "classifier")
        assert rows[-1].operation == "undo" and rows[-1].reason == "v2 hurts checkout"
        assert [r.operation for r in rows].count("undo") == 1
        assert again.value.code == "FAILED_PRECONDITION"
        assert "no promotion to undo" in again.value.details
    finally:
        app.stop(0)


def test_undo_after_the_grace_period_is_refused(tmp_path: Path) -> None:
    app = serve(tmp_path, rollback_grace_seconds=0.0)
    try:
        with admin(app) as ops:
            ops.start("classifier", "2", canary_ppm=100_000)
            ops.transition("promote", "classifier")
            time.sleep(0.01)
            with pytest.raises(ClientError, match="grace period after promoting '2' ended"):
                ops.transition("undo", "classifier")
            assert ops.get("classifier").stable_version == "2"
    finally:
        app.stop(0)
