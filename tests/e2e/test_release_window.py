"""Release windows: automatic steps and promotion only on the policy's days and hours."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from server.promotion.controller import PromotionController
from server.promotion.decision import Action, CheckStatus, Evidence, VersionWindow
from server.promotion.documents import InvalidPromotionInput
from server.promotion.gates import decide
from server.promotion.policy import Policy, ReleaseWindow
from server.rollout.controller import RolloutController
from server.rollout.state import StartRollout
from server.telemetry.windows import WindowSummary
from server.testing import FakeClock, MemoryStore
from tests.support.release import FAST, Load, admin, reload, serve
from tests.support.waiting import wait_for

BERLIN = ReleaseWindow(days=("mon", "tue", "wed", "thu", "fri"), start="09:00", end="17:00",
                       timezone="Europe/Berlin")  # fmt: skip


def at(text: str, tz: str = "Europe/Berlin") -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        ("2026-11-30 09:00", True),  # a Monday, at the start: inclusive
        ("2026-11-30 16:59", True),
        ("2026-11-30 17:00", False),  # the end is exclusive
        ("2026-11-30 08:59", False),
        ("2026-11-28 12:00", False),  # Saturday
        ("2026-07-06 09:30", True),  # summer time: still local hours
    ],
)
def test_window_in_local_time(moment: str, open_: bool) -> None:
    assert BERLIN.is_open(at(moment)) is open_


def test_a_window_across_midnight() -> None:
    night = ReleaseWindow(start="22:00", end="02:00", timezone="UTC")
    assert night.is_open(at("2026-11-30 23:30", "UTC"))
    assert night.is_open(at("2026-12-01 01:59", "UTC"))
    assert not night.is_open(at("2026-12-01 02:00", "UTC"))


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"days": ["funday"]}, "is not one of"),
        ({"days": []}, "at least one day"),
        ({"start": "9am"}, "HH:MM"),
        ({"end": "25:00"}, "00:00..24:00"),
        ({"start": "10:00", "end": "10:00"}, "must differ"),
        ({"timezone": "Mars/Olympus"}, "IANA time zone"),
        ({"hours": 3}, "unknown ReleaseWindow key"),
    ],
)
def test_window_validates(doc: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidPromotionInput, match=match):
        Policy.from_dict({"release_window": doc})


def test_policy_round_trip_with_a_window() -> None:
    policy = Policy(release_window=BERLIN)
    assert Policy.from_dict(json.loads(policy.to_json())) == policy


STABLE = VersionWindow(5000, 0, 5.0, 8.0, 10.0, (), 60.0)
GOOD = VersionWindow(400, 0, 4.0, 7.0, 10.0, (), 60.0)
BAD = VersionWindow(150, 8, 4.0, 7.0, 10.0, ("t",), 60.0)


def test_outside_the_window_holds_but_still_rolls_back() -> None:
    policy = Policy(shadow_ppm=0, release_window=BERLIN)
    saturday = at("2026-11-28 12:00")
    ev = Evidence("m", "1", "2", 0, 60.0, STABLE, GOOD, now=saturday)
    held = decide(policy, ev)
    assert held.action is Action.HOLD
    assert (
        "outside the release window (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin" in held.reason
    )
    assert "now Sat 12:00 there" in held.reason
    check = next(c for c in held.checks if c.name == "release_window")
    assert check.status is CheckStatus.NO_DATA
    monday = at("2026-11-30 10:00")
    assert decide(policy, Evidence("m", "1", "2", 0, 60.0, STABLE, GOOD, now=monday)).action is (
        Action.ADVANCE
    )
    failing = Evidence("m", "1", "2", 0, 60.0, STABLE, BAD, failed_checks=1, now=saturday)
    assert decide(policy, failing).action is Action.ROLLBACK


class FakeWindows:
    bucket_s = 1.0

    def summary(self, model: str, version: str, window_s: float, since: float = 0.0) -> Any:
        w = STABLE if version == "1" else GOOD
        return WindowSummary(w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms, (), w.window_s)


class NoShadow:
    def stats(self, model: str, candidate: str | None = None) -> None:
        return None


def test_the_controller_holds_until_the_window_opens_on_a_fake_clock() -> None:
    clock = FakeClock(at("2026-11-30 07:00"))  # Monday, two hours before the window
    rollouts = RolloutController(
        MemoryStore(), ready_versions=lambda m: frozenset({"1", "2"}), publish=lambda t: None,
        clock=clock,
    )  # fmt: skip
    rollouts.adopt({"m": "1"})
    pc = PromotionController(rollouts, FakeWindows(), NoShadow(), clock=clock)  # type: ignore[arg-type]
    policy = Policy(
        shadow_ppm=0, steps=(10_000, 50_000), min_duration_s=10.0, release_window=BERLIN
    )
    rollouts.execute("m", StartRollout("2", canary_ppm=10_000, policy=policy.as_dict()), actor="t",
                     reason="")  # fmt: skip
    for _ in range(3):
        clock.advance(1800)  # 07:30, 08:00, 08:30: every gate passes, the window is closed
        decision = pc.evaluate("m")
        assert decision is not None and decision.action is Action.HOLD
        assert "outside the release window" in decision.reason
    assert rollouts.get("m").canary_ppm == 10_000
    holds = [e for e in rollouts.audit("m") if e.operation == "auto_hold"]
    assert len(holds) == 3  # the reason names the time, so each hour's hold is its own row
    clock.advance(1800)  # 09:00: open
    decision = pc.evaluate("m")
    assert decision is not None and decision.action is Action.ADVANCE
    assert rollouts.get("m").canary_ppm == 50_000


def test_a_closed_window_holds_a_server_rollout_and_says_why(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    closed = {  # one hour, starting 12 hours from now: closed now whatever the day
        "start": f"{(now.hour + 12) % 24:02d}:00",
        "end": f"{(now.hour + 13) % 24:02d}:00",
        "timezone": "UTC",
    }
    app = serve(tmp_path)
    try:
        (app.config.models_dir / "classifier" / "2").rename(
            app.config.models_dir / "classifier" / "3"
        )
        reload(app)
        policy = {**FAST, "release_window": closed}
        with admin(app) as ops, Load(app):
            ops.start("classifier", "3", automatic=True, policy_json=json.dumps(policy))
            wait_for(
                lambda: "outside the release window" in ops.explain("classifier").reason,
                timeout=60.0,
            )
            rollout = ops.get("classifier")
            explained = ops.explain("classifier")
        assert rollout.candidate_version == "3" and rollout.canary_weight_ppm == 100_000
        assert explained.action == "hold"
        window = next(c for c in explained.checks if c.name == "release_window")
        assert window.status == "no_data" and "UTC" in window.detail
    finally:
        app.stop(0)
