"""Drills: a guarded rollout of a copy of stable with faults injected in the copy's path only,
to rehearse the emergency path — whether and how fast the guard rails catch a bad candidate.

A drill lives in memory (a restart forgets it); the audit log keeps its start, its end and
its report.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from server.errors import FailedPrecondition, InvalidInput
from server.rollout.changes import CommandResult
from server.rollout.controller import RolloutController
from server.rollout.router import PPM
from server.rollout.state import JSONValue, Rollback, RolloutState, StartRollout
from server.serving.faults import FaultyRunner
from server.serving.registry import Registry

__all__ = ["DEFAULT_DRILL_PPM", "DrillReport", "Drills"]

#: A drill's canary weight when the request names none: 10 %.
DEFAULT_DRILL_PPM = 100_000


@dataclass(frozen=True)
class _Drill:
    version: str
    started_at: float
    error_ppm: int
    added_latency_ms: float


@dataclass(frozen=True)
class DrillReport:
    """How one drill went; `as_dict()` is what the audit log's drill_report row holds."""

    drill_version: str
    error_rate_ppm: int
    added_latency_ms: float
    seconds_to_rollback: float | None  # None: the guard rails did not catch it
    candidate_requests: int
    callers_affected: int
    rollout: RolloutState

    @property
    def caught(self) -> bool:
        return self.seconds_to_rollback is not None

    def as_dict(self) -> dict[str, JSONValue]:
        return {
            "drill_version": self.drill_version,
            "error_rate_ppm": self.error_rate_ppm,
            "added_latency_ms": self.added_latency_ms,
            "caught": self.caught,
            "seconds_to_rollback": (
                round(self.seconds_to_rollback, 3) if self.seconds_to_rollback is not None else None
            ),
            "candidate_requests": self.candidate_requests,
            "callers_affected": self.callers_affected,
        }


class Drills:
    """Starts and ends drills, one per model at a time."""

    def __init__(self, registry: Registry, rollouts: RolloutController) -> None:
        self._registry = registry
        self._rollouts = rollouts
        self._running: dict[str, _Drill] = {}
        self._lock = threading.Lock()

    def start(
        self,
        model: str,
        *,
        error_ppm: int,
        added_latency_ms: float,
        canary_ppm: int,
        guard: Mapping[str, JSONValue],
        actor: str,
        reason: str,
    ) -> tuple[str, CommandResult]:
        """Register a faulty copy of stable and roll it out under `guard`; (copy's version,
        the rollout's start)."""
        if not error_ppm and not added_latency_ms:
            raise InvalidInput("a drill injects something: error_rate_ppm or added_latency_ms")
        if error_ppm > PPM or not 0 <= added_latency_ms <= 60_000:
            raise InvalidInput("error_rate_ppm must be <= 1000000 and added_latency_ms 0..60000")
        with self._lock:
            if model in self._running:
                raise FailedPrecondition(f"model '{model}' has a drill running; end it first")
            state = self._rollouts.get(model)
            if state.active:
                raise FailedPrecondition(
                    f"model '{model}' has an active rollout of version '{state.candidate}';"
                    " a drill needs the model to itself"
                )
            copy = self._registry.add_copy(
                model,
                state.stable,
                lambda r: FaultyRunner(r, error_ppm=error_ppm, added_latency_ms=added_latency_ms),
            )
            drill: dict[str, JSONValue] = {
                "version": copy.version,
                "copy_of": state.stable,
                "error_rate_ppm": error_ppm,
                "added_latency_ms": added_latency_ms,
            }
            try:
                out = self._rollouts.execute(
                    model,
                    StartRollout(
                        candidate=copy.version,
                        canary_ppm=canary_ppm or DEFAULT_DRILL_PPM,
                        guard=guard,
                    ),
                    actor=actor,
                    reason=reason or "drill",
                    operation="drill_start",
                    extra={"drill": drill, "guard_rails": "on"},
                )
            except Exception:
                self._registry.remove(model, copy.version)
                raise
            self._running[model] = _Drill(
                copy.version, out.after.updated_at, error_ppm, added_latency_ms
            )
        return copy.version, out

    def end(self, model: str, *, actor: str, reason: str) -> DrillReport:
        """Roll the copy back if the guard rails have not, report (audited), remove the copy."""
        with self._lock:
            drill = self._running.get(model)
            if drill is None:
                raise FailedPrecondition(f"model '{model}' has no drill running")
            state = self._rollouts.get(model)
            caught_at = None
            if state.candidate == drill.version:  # the guard rails did not catch it
                state = self._rollouts.execute(
                    model, Rollback(), actor=actor, reason="drill ended", operation="drill_end"
                ).after
            else:
                caught_at = next(
                    (
                        e.at
                        for e in self._rollouts.audit(model, limit=1000)
                        if e.operation == "guard_rollback"
                        and e.at >= drill.started_at
                        and e.before is not None
                        and f'"candidate":"{drill.version}"' in e.before
                    ),
                    None,
                )
            mv = self._registry.versions(model).get(drill.version)
            served = 0 if mv is None else mv.stats.success_count + mv.stats.fail_count
            failed = 0 if mv is None else mv.stats.fail_count
            report = DrillReport(
                drill_version=drill.version,
                error_rate_ppm=drill.error_ppm,
                added_latency_ms=drill.added_latency_ms,
                seconds_to_rollback=(
                    caught_at - drill.started_at if caught_at is not None else None
                ),
                candidate_requests=served,
                callers_affected=served if drill.added_latency_ms else failed,
                rollout=state,
            )
            verdict = (
                f"caught by the guard rails after {report.as_dict()['seconds_to_rollback']} s"
                if report.caught
                else "NOT caught by the guard rails"
            )
            self._rollouts.append_audit(
                model,
                "drill_report",
                actor,
                f"drill of version {drill.version}: {verdict}; {served} candidate requests,"
                f" {report.callers_affected} callers affected" + (f" ({reason})" if reason else ""),
                report.as_dict(),
            )
            self._registry.remove(model, drill.version)
            del self._running[model]
        return report
