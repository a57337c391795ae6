"""RolloutController: the one writer of rollout state — validates, persists, publishes, notifies.

Every command runs under one write lock: apply() it (the stage machine), commit state + audit
row in one store transaction, swap the in-memory state, publish a fresh RoutingTable, then
hand the event to watchers — the last four are the RolloutLedger's (rollout.ledger), which
also follows other writers of the same store (other processes, other replicas of a fleet)
through the store's watch, so every replica routes from the same state. Readers (get, list,
table) never wait on the store. Unloading a model version runs under the same lock
(`unload_unused`), so no rollout can start on a version between the check that routing does
not use it and the unload.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TypeAlias

from server.clock import Clock
from server.errors import FailedPrecondition, RevisionMismatch
from server.rollout.admission import Admission
from server.rollout.changes import CommandResult
from server.rollout.ledger import AuditListener, RolloutLedger, evidence_json
from server.rollout.publisher import Publish, ReadyVersions
from server.rollout.state import (
    Command,
    JSONValue,
    Rollback,
    StartRollout,
    Undo,
    apply,
    initial_state,
)
from server.rollout.store import AuditEntry, StateStore

__all__ = [
    "AuditListener",
    "Publish",
    "ReadyVersions",
    "RolloutController",
    "SaltFactory",
]

log = logging.getLogger(__name__)

SaltFactory: TypeAlias = Callable[[], str]


def _default_salt() -> str:
    return secrets.token_hex(8)


class RolloutController(RolloutLedger):
    """Thread-safe owner of every model's RolloutState and of the published routing table,
    and the one place commands change them."""

    def __init__(
        self,
        store: StateStore,
        *,
        ready_versions: ReadyVersions,
        publish: Publish,
        clock: Clock = time.time,
        salt_factory: SaltFactory = _default_salt,
        grace_seconds: float = 600.0,
        allow_pinning: bool = True,
        watch_max_pending: int = 1024,
        on_audit: AuditListener | None = None,
    ) -> None:
        super().__init__(
            store,
            ready_versions=ready_versions,
            publish=publish,
            clock=clock,
            allow_pinning=allow_pinning,
            watch_max_pending=watch_max_pending,
            on_audit=on_audit,
        )
        self._ready_versions = ready_versions
        self._admit: Admission | None = None
        self._salt = salt_factory
        self._grace = grace_seconds

    # -- commands ----------------------------------------------------------------------------

    def adopt(self, models: Mapping[str, str]) -> list[CommandResult]:
        """Persist an initial state for each model (name -> default stable) not seen before.

        Saved states win: a newer version appearing on disk never changes stable by itself.
        Publishes the table either way.
        """
        results = []
        with self._lock:
            for model in sorted(models):
                if model in self._states:
                    continue
                state = initial_state(model, models[model], self._clock())
                entry = AuditEntry(
                    id=0,
                    at=state.updated_at,
                    actor="server",
                    model=model,
                    operation="adopt",
                    before=None,
                    after=state.to_json(),
                    reason="first seen; its default version becomes stable",
                )
                try:
                    results.append(self._commit(None, state, None, entry))
                except RevisionMismatch:
                    # Another replica adopted it first (_commit reloaded theirs): theirs wins.
                    log.info("model %s was adopted by another replica", model)
            self._publish_all()
        return results

    def execute(
        self,
        model: str,
        command: Command,
        *,
        actor: str,
        reason: str,
        expected_revision: int | None = None,
        dry_run: bool = False,
        operation: str | None = None,
        extra: Mapping[str, JSONValue] | None = None,
    ) -> CommandResult:
        """Apply `command` to `model`: validated, persisted with an audit row, published.

        A no-op or a dry run writes and publishes nothing. `operation` names the audit row
        (default: the command's action); `extra` is JSON evidence stored with it.
        """
        with self._lock:
            before = self.get(model)
            if expected_revision is not None and expected_revision != before.revision:
                raise RevisionMismatch(model, expected_revision, before.revision)
            if self._admit is not None:
                self._admit(before, command)  # in a fleet: the version must be ready everywhere
            now = self._clock()
            starting = isinstance(command, StartRollout)
            after = apply(
                before,
                command,
                now=now,
                new_salt=self._salt() if starting else before.salt,
                ready=(
                    self._ready_versions(model)
                    if starting or isinstance(command, Undo)
                    else frozenset()
                ),
                grace_seconds=self._grace,
            )
            if dry_run or after is before:
                return CommandResult(before, after, changed=after is not before)
            entry = AuditEntry(
                id=0,
                at=now,
                actor=actor,
                model=model,
                operation=operation or command.action,
                before=before.to_json(),
                after=after.to_json(),
                reason=reason,
                extra=None if extra is None else evidence_json(extra),
            )
            return self._commit(before, after, before.revision, entry)

    def admit_with(self, admission: Admission) -> None:
        """Check every command with `admission` before it commits (rollout.admission)."""
        self._admit = admission

    def kill_switch(self, *, actor: str, reason: str, dry_run: bool = False) -> list[CommandResult]:
        """Roll back every active candidate, each in its own transaction.

        Keeps going past a failing model so one bad row cannot keep the others live, then
        raises the first error.
        """
        results: list[CommandResult] = []
        errors: list[Exception] = []
        with self._lock:
            for state in self.states():
                if not state.active:
                    continue
                try:
                    results.append(
                        self.execute(
                            state.model,
                            Rollback(),
                            actor=actor,
                            reason=reason,
                            dry_run=dry_run,
                            operation="kill_switch",
                        )
                    )
                except Exception as exc:
                    log.exception("kill switch could not roll back model %s", state.model)
                    errors.append(exc)
        if errors:
            raise errors[0]
        return results

    def in_use(self, model: str) -> dict[str, str]:
        """The versions of `model` that routing uses now, each with why and what to do.

        The stable version, the active candidate, and the previous stable while it is the
        rollback target (its grace period after a promotion). Empty for a model with no state.
        """
        state = self._states.get(model)
        if state is None:
            return {}
        uses = {state.stable: "it is the stable version; promote another version first"}
        if state.candidate is not None:
            uses[state.candidate] = (
                f"it is the candidate of the active {state.phase} rollout; "
                "roll it back or promote it first"
            )
        until = state.previous_stable_until
        if state.previous_stable is not None and until is not None and until > self._clock():
            when = datetime.datetime.fromtimestamp(until, datetime.UTC).isoformat(
                timespec="seconds"
            )
            uses.setdefault(
                state.previous_stable,
                f"it is the previous stable, the rollback target until {when} "
                "(rollback_grace_seconds); unload it after that",
            )
        return uses

    def unload_unused(
        self,
        model: str,
        version: str | None,
        unload: Callable[[], None],
        *,
        actor: str,
        reason: str,
        extra: Mapping[str, JSONValue] | None = None,
        audit: bool = True,
    ) -> AuditEntry | None:
        """Run `unload` (of `version`, or of the whole model when None) and audit it (unless
        not `audit`: a fleet replica following another replica's audited call), unless
        routing uses what it would take away: then FailedPrecondition saying why and what to do.

        A single version is refused when routing uses it (see `in_use`); the whole model only
        while it has an active rollout (taking a model out of service is what a whole-model
        unload is for). Runs under the write lock, so no rollout starts on the version between
        the check and the unload.
        """
        with self._lock:
            state = self._states.get(model)
            if version is not None:
                why = self.in_use(model).get(version)
                if why is not None:
                    raise FailedPrecondition(
                        f"cannot unload model '{model}' version '{version}': {why}"
                    )
            elif state is not None and state.candidate is not None:
                raise FailedPrecondition(
                    f"cannot unload model '{model}': its {state.phase} rollout of version "
                    f"'{state.candidate}' is active; roll it back or promote it first"
                )
            unload()
            return self.append_audit(model, "unload", actor, reason, extra) if audit else None
