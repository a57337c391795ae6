"""Stable alerts: a stable version whose error rate crosses a threshold while no rollout runs.

`Crossing` is the pure state machine of one model: it fires once when the rate over the
window reaches the threshold (with at least `min_requests` observations), and resolves once
when the rate falls below `resolve_ratio` of the threshold (with as many observations) — the
gap keeps a rate hovering at the threshold from flapping. Too few observations change
nothing. `StableAlerts` runs it every `tick_s` over each idle model's stable window and
publishes `stable.alert.firing` / `stable.alert.resolved` events. During a rollout the
promotion gates watch the versions, so an idle model's alert state is kept, not evaluated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from server.clock import Clock
from server.notify.events import Event
from server.rollout.state import RolloutState
from server.ticker import Ticker

__all__ = ["AlertPolicy", "Crossing", "StableAlerts", "WindowCounts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertPolicy:
    """When a stable version's error rate alerts (`[notifications]` keys `stable_error_*`)."""

    threshold: float = 0.05
    min_requests: int = 20
    window_s: float = 60.0
    resolve_ratio: float = 0.5


class WindowCounts(Protocol):
    """What the alert reads of a version's rolling window (telemetry's WindowSummary)."""

    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def error_trace_ids(self) -> tuple[str, ...]: ...


class Crossing:
    """One model's alert state: firing or not."""

    def __init__(self, policy: AlertPolicy) -> None:
        self.policy = policy
        self.firing = False

    def observe(self, requests: int, errors: int) -> str | None:
        """ "firing" or "resolved" when this observation changes the state, else None."""
        p = self.policy
        if requests < max(1, p.min_requests):
            return None
        rate = errors / requests
        if not self.firing and rate >= p.threshold:
            self.firing = True
            return "firing"
        if self.firing and rate < p.threshold * p.resolve_ratio:
            self.firing = False
            return "resolved"
        return None


Summary = Callable[[str, str, float], WindowCounts]
Publish = Callable[[Event], None]


class StableAlerts:
    """Evaluates every idle model's stable window on an interval and publishes crossings."""

    def __init__(
        self,
        policy: AlertPolicy,
        states: Callable[[], Sequence[RolloutState]],
        summary: Summary,
        publish: Publish,
        *,
        is_leader: Callable[[], bool] | None = None,
        clock: Clock = time.time,
        tick_s: float = 5.0,
    ) -> None:
        self.policy = policy
        self._states = states
        self._summary = summary
        self._publish = publish
        self._is_leader = is_leader or (lambda: True)
        self._clock = clock
        self._crossings: dict[tuple[str, str], Crossing] = {}
        # The watcher must outlive any one bad evaluation: the ticker logs and goes on.
        self._ticker = Ticker(
            "canaryserve-alerts",
            tick_s,
            self.evaluate,
            log=log,
            failure="stable alert evaluation failed",
        )

    def start(self) -> None:
        self._ticker.start()

    def shutdown(self, timeout: float = 2.0) -> None:
        self._ticker.stop(timeout)

    def evaluate(self) -> list[Event]:
        """Look at every idle model's stable version once; publish and return the crossings."""
        if not self._is_leader():
            return []  # one sender per fleet: the leader
        events = []
        for state in self._states():
            if state.active:
                continue
            for key in [k for k in self._crossings if k[0] == state.model]:
                if key[1] != state.stable and self._crossings.pop(key).firing:
                    # A promotion replaced the failing stable: its alert ends with it.
                    events.append(self._replaced(state, key[1]))
            crossing = self._crossings.setdefault(
                (state.model, state.stable), Crossing(self.policy)
            )
            window = self._summary(state.model, state.stable, self.policy.window_s)
            change = crossing.observe(window.requests, window.errors)
            if change is not None:
                events.append(self._event(state, window, change))
        for event in events:
            self._publish(event)
        return events

    def _replaced(self, state: RolloutState, old: str) -> Event:
        return Event(
            type="stable.alert.resolved",
            model=state.model,
            severity="info",
            summary=f"version {old} is no longer stable (version {state.stable} is)",
            at=self._clock(),
            actor="server",
            details={"stable_version": old, "replaced_by": state.stable},
        )

    def _event(self, state: RolloutState, window: WindowCounts, change: str) -> Event:
        p = self.policy
        rate = window.errors / window.requests
        verb = "is failing" if change == "firing" else "recovered"
        return Event(
            type=f"stable.alert.{change}",
            model=state.model,
            severity="critical" if change == "firing" else "info",
            summary=(
                f"stable version {state.stable} {verb}: {rate:.1%} of sampled calls failed in"
                f" the last {p.window_s:g} s (threshold {p.threshold:.1%})"
            ),
            at=self._clock(),
            actor="server",
            details={
                "stable_version": state.stable,
                "error_rate": rate,
                "threshold": p.threshold,
                "resolve_below": p.threshold * p.resolve_ratio,
                "sampled_requests": window.requests,
                "sampled_errors": window.errors,
                "window_seconds": p.window_s,
                "trace_ids": list(window.error_trace_ids),
            },
        )
