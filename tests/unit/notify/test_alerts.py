"""The stable alert: fires once per crossing, resolves once, ignores thin data and rollouts."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from server.notify.alerts import AlertPolicy, Crossing, StableAlerts
from server.notify.events import Event
from server.rollout.state import RolloutState
from server.testing import FakeClock

POLICY = AlertPolicy(threshold=0.1, min_requests=20, window_s=60.0)


def test_it_fires_once_while_the_rate_stays_high_and_resolves_once_below_half() -> None:
    c = Crossing(POLICY)
    assert c.observe(100, 5) is None
    assert c.observe(100, 10) == "firing"
    assert [c.observe(100, 30) for _ in range(5)] == [None] * 5
    assert c.observe(100, 7) is None  # below the threshold but not below half of it
    assert c.observe(100, 4) == "resolved"
    assert c.observe(100, 4) is None


def test_too_few_observations_change_nothing() -> None:
    c = Crossing(POLICY)
    assert c.observe(19, 19) is None
    assert c.observe(20, 2) == "firing"
    assert c.observe(0, 0) is None and c.firing  # no traffic: still firing, not resolved


@given(st.lists(st.tuples(st.integers(0, 200), st.floats(0, 1)), max_size=60))
def test_firing_and_resolved_alternate_starting_with_firing(
    series: list[tuple[int, float]],
) -> None:
    c = Crossing(POLICY)
    changes = [c.observe(n, round(n * share)) for n, share in series]
    seen = [x for x in changes if x is not None]
    assert seen == ["firing", "resolved"] * (len(seen) // 2) + ["firing"] * (len(seen) % 2)


@dataclass(frozen=True)
class Counts:
    requests: int
    errors: int
    error_trace_ids: tuple[str, ...] = ("ab" * 16,)


class Rig:
    def __init__(self) -> None:
        self.states = [RolloutState(model="m", stable="1")]
        self.counts = Counts(0, 0)
        self.events: list[Event] = []
        self.leader = True
        self.asked: list[tuple[str, str, float]] = []
        self.alerts = StableAlerts(
            POLICY,
            lambda: self.states,
            self.summary,
            self.events.append,
            is_leader=lambda: self.leader,
            clock=FakeClock(1000.0),
        )

    def summary(self, model: str, version: str, window_s: float) -> Counts:
        self.asked.append((model, version, window_s))
        return self.counts


def test_an_idle_models_stable_window_alerts_with_evidence() -> None:
    rig = Rig()
    rig.counts = Counts(50, 25)
    (event,) = rig.alerts.evaluate()
    assert rig.asked == [("m", "1", 60.0)]
    assert (event.type, event.severity, event.model) == ("stable.alert.firing", "critical", "m")
    assert event.summary == (
        "stable version 1 is failing: 50.0% of sampled calls failed in the last 60 s"
        " (threshold 10.0%)"
    )
    assert event.details["trace_ids"] == ["ab" * 16]
    assert rig.alerts.evaluate() == []  # once per crossing
    rig.counts = Counts(50, 0)
    (resolved,) = rig.alerts.evaluate()
    assert (resolved.type, resolved.severity) == ("stable.alert.resolved", "info")
    assert rig.events == [event, resolved]


def test_a_model_with_a_rollout_is_left_to_the_promotion_gates() -> None:
    rig = Rig()
    rig.states = [
        RolloutState(model="m", stable="1", candidate="2", phase="canary", canary_ppm=1, salt="s")
    ]
    rig.counts = Counts(50, 50)
    assert rig.alerts.evaluate() == [] and rig.asked == []


def test_only_the_leader_evaluates() -> None:
    rig = Rig()
    rig.leader = False
    rig.counts = Counts(50, 50)
    assert rig.alerts.evaluate() == [] and rig.events == []


def test_a_firing_alert_resolves_when_its_version_stops_being_stable() -> None:
    rig = Rig()
    rig.counts = Counts(50, 50)
    assert [e.type for e in rig.alerts.evaluate()] == ["stable.alert.firing"]
    rig.states = [RolloutState(model="m", stable="2")]
    rig.counts = Counts(50, 0)
    (resolved,) = rig.alerts.evaluate()
    assert (resolved.type, resolved.details["stable_version"]) == ("stable.alert.resolved", "1")
    assert resolved.summary == "version 1 is no longer stable (version 2 is)"
    assert rig.alerts.evaluate() == []
