"""The promotion controller: evaluates each automatic or guarded rollout on an interval, acts.

It reads the per-version windows and shadow aggregates, asks the pure `promotion.decide()`,
and acts through the same RolloutController as the admin service — so every step, promotion
and rollback is compare-and-set, durable and audited (actor "promotion", the decision as JSON
evidence). Holds are audited when their reason changes. Operators take over at any time: a
paused rollout is skipped, a manual step waits for `approve()`, and any admin write simply
changes the revision the next evaluation starts from.

A manual rollout started with guard rails (the default) carries a guard policy instead: the
same gates judge it (`promotion.guard()`), but only a rollback acts ("guard_rollback"); its
steps and promotion stay the operator's.

The parts it is made of: promotion.tracks (what it remembers of a rollout between
evaluations), promotion.step_evidence (what a step is judged on) and promotion.actions (the
commands a decision becomes).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeAlias

from server.clock import Clock
from server.errors import CanaryServeError, FailedPrecondition, ModelNotFound
from server.outcomes.merged import OutcomeSource
from server.promotion.actions import commands_for
from server.promotion.confirm import Confirm, held
from server.promotion.decision import Action, CheckStatus, Decision
from server.promotion.evidence import EvidenceSource, LocalEvidence
from server.promotion.gates import decide, guard
from server.promotion.policy import Policy
from server.promotion.step_evidence import step_evidence, step_of
from server.promotion.tracks import Track, next_track
from server.rollout.controller import RolloutController
from server.rollout.state import RolloutState
from server.shadow.executor import ShadowExecutor
from server.telemetry.windows import WindowProcessor
from server.ticker import Ticker

__all__ = ["ACTOR", "DecisionListener", "PromotionController", "step_of"]

log = logging.getLogger(__name__)

ACTOR = "promotion"
DecisionListener: TypeAlias = Callable[[Decision], None]


def _watched(state: RolloutState) -> bool:
    """An active, unpaused rollout that is automatic or has guard rails."""
    guarded = state.policy is not None or state.guard is not None
    return state.active and guarded and not state.paused


class PromotionController:
    """Steps automatic rollouts forward, promotes or rolls back, and explains why."""

    def __init__(
        self,
        rollouts: RolloutController,
        windows: WindowProcessor,
        shadow: ShadowExecutor,
        *,
        clock: Clock = time.time,
        tick_s: float = 1.0,
        on_decision: DecisionListener | None = None,
        is_leader: Callable[[], bool] | None = None,
        confirm: Confirm | None = None,
        outcomes: OutcomeSource | None = None,
        evidence: EvidenceSource | None = None,
    ) -> None:
        self._rollouts = rollouts
        #: In a fleet, the merged windows of every live replica (docs/fleet.md).
        self._windows = evidence or LocalEvidence(windows, shadow)
        self._clock = clock
        self._on_decision = on_decision
        #: In a fleet only the elected leader acts; every replica still decides and explains.
        self._is_leader = is_leader or (lambda: True)
        #: Asked before an automatic step or promotion (the pre-promotion hook), leader only.
        self._confirm = confirm
        self._outcomes = outcomes
        self._tracks: dict[str, Track] = {}
        self._policies: dict[tuple[str, int], Policy] = {}
        self._next_at: dict[str, float] = {}
        self._lock = threading.Lock()
        # The controller must outlive any one bad evaluation: the ticker logs and goes on.
        self._ticker = Ticker(
            "canaryserve-promotion",
            tick_s,
            self.evaluate_due,
            log=log,
            failure="promotion evaluation failed",
        )
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    # -- lifecycle --

    def start(self) -> None:
        self._ticker.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)

    # -- operator hooks --

    def approve(self, model: str) -> Decision | None:
        """Approve the current manual step of `model`; returns the latest decision, if any."""
        state = self._rollouts.get(model)
        if state.policy is None or not state.active:
            raise FailedPrecondition(f"model '{model}' has no automatic rollout to approve")
        with self._lock:
            track = self._track(state)
            track.approved = True
            self._next_at.pop(model, None)  # evaluate at the next tick
            return track.last

    def explain(self, model: str) -> Decision | None:
        """The latest decision about `model`'s rollout (None before the first evaluation)."""
        self._rollouts.get(model)  # NotFound for unknown models
        with self._lock:
            track = self._tracks.get(model)
            return track.last if track is not None else None

    # -- evaluation --

    def evaluate_due(self) -> list[Decision]:
        """Evaluate every automatic rollout whose interval has elapsed."""
        now = self._clock()
        decisions = []
        for state in self._rollouts.states():
            if not _watched(state):
                continue
            policy = self._policy(state)
            if now < self._next_at.get(state.model, 0.0):
                continue
            self._next_at[state.model] = now + policy.interval_s
            decision = self.evaluate(state.model)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def evaluate(self, model: str) -> Decision | None:
        """Evaluate `model` now and act on the decision; None if it has no automatic rollout."""
        try:
            state = self._rollouts.get(model)
        except ModelNotFound:
            return None
        if not _watched(state):
            return None
        policy = self._policy(state)
        leader = self._is_leader()
        with self._lock:
            track = self._track(state)
            evidence = step_evidence(
                self._windows, self._outcomes, state, policy, track, self._clock()
            )
            decision = (
                decide(policy, evidence) if state.policy is not None else guard(policy, evidence)
            )
            # A step the pre-promotion hook must confirm is explained once the hook answered:
            # never "advance" while the hook is being asked and may still hold it.
            confirming = (
                leader
                and self._confirm is not None
                and state.policy is not None
                and decision.action in (Action.ADVANCE, Action.PROMOTE)
            )
            if not confirming:
                track.last = decision
            track.failed_checks = decision.failed_checks
            track.step_downs = decision.step_downs
        if not leader:
            return decision  # explained here; the fleet's leader acts
        if confirming:
            assert self._confirm is not None
            why = self._confirm(decision)
            if why is not None:
                decision = held(decision, why)
            with self._lock:
                track.last = decision
        self._act(state, decision)
        return decision

    def _policy(self, state: RolloutState) -> Policy:
        """The rollout's policy (or a manual rollout's guard policy), parsed once per rollout
        from the document its state stores."""
        document = state.policy if state.policy is not None else state.guard
        assert document is not None
        key = (state.model, state.rollout_id)
        policy = self._policies.get(key)
        if policy is None:
            self._policies = {k: v for k, v in self._policies.items() if k[0] != state.model}
            policy = self._policies[key] = Policy.from_dict(document)
        return policy

    def _track(self, state: RolloutState) -> Track:
        track = next_track(self._tracks.get(state.model), state)
        self._tracks[state.model] = track
        return track

    def _act(self, state: RolloutState, decision: Decision) -> None:
        self.counts[(state.model, decision.action.value)] += 1
        if self._on_decision is not None:
            self._on_decision(decision)
        automatic = state.policy is not None
        kind = "auto" if automatic else "guard"
        commands = commands_for(decision, automatic=automatic)
        extra = decision.as_dict()
        if not commands:  # a hold: audit it when its reason changes, not every interval
            failing = any(c.status is CheckStatus.FAIL for c in decision.checks)
            if not automatic and not failing:
                return  # a guard that sees nothing wrong has nothing to say
            with self._lock:
                track = self._tracks.get(state.model)
                if track is None or track.last_reason == decision.reason:
                    return
                track.last_reason = decision.reason
            self._rollouts.append_audit(state.model, f"{kind}_hold", ACTOR, decision.reason, extra)
            return
        expected: int | None = state.revision
        try:
            for command in commands:
                outcome = self._rollouts.execute(
                    state.model,
                    command,
                    actor=ACTOR,
                    reason=decision.reason,
                    expected_revision=expected,
                    operation=f"{kind}_{decision.action.value}",
                    extra=extra,
                )
                expected = outcome.after.revision
        except CanaryServeError as exc:  # an operator got there first: re-read next time
            log.info("promotion of %s skipped: %s", state.model, exc)
            return
        log.info("model %s: %s", state.model, decision.reason)
