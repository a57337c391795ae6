"""RolloutController: the one writer of rollout state — validates, persists, publishes, notifies.

Every change runs under one write lock: apply() the command, commit state + audit row in one
store transaction, swap the in-memory state, publish a fresh RoutingTable, then hand the event
to watchers. Readers (get, list, table) never wait on the store. Unloading a model version
runs under the same lock (`unload_unused`), so no rollout can start on a version between the
check that routing does not use it and the unload.

Other writers of the same store (other processes, other replicas of a fleet) are followed
through the store's watch: sync() takes every stored state newer than the one in memory,
republishes the routing table and tells watchers, so every replica routes from the same state.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeAlias

from server.clock import Clock
from server.errors import FailedPrecondition, ModelNotFound, RevisionMismatch
from server.rollout.admission import Admission
from server.rollout.changes import CommandResult, Subscription, WatchEvent
from server.rollout.router import RoutingTable
from server.rollout.state import (
    Command,
    JSONValue,
    Rollback,
    RolloutState,
    StartRollout,
    Undo,
    apply,
    build_table,
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
#: model -> its loaded-and-ready versions. Called under the controller's write lock, so it must
#: not block on a lock whose holder may call into the controller (e.g. refresh_ready()).
ReadyVersions: TypeAlias = Callable[[str], frozenset[str]]
Publish: TypeAlias = Callable[[RoutingTable], None]
#: Hears every audit row this controller commits (not the rows other replicas wrote), under
#: the write lock, in commit order: it must not block (server.notify queues and returns).
AuditListener: TypeAlias = Callable[[AuditEntry], None]


def _default_salt() -> str:
    return secrets.token_hex(8)


def _synced(state: RolloutState) -> AuditEntry:
    """The audit row a watcher sees for a change another replica made (the store's audit log
    holds the real one, with its actor and reason)."""
    return AuditEntry(
        id=0,
        at=state.updated_at,
        actor="store",
        model=state.model,
        operation="sync",
        before=None,
        after=state.to_json(),
        reason="changed through another replica; its audit row is in the shared audit log",
    )


def _dumps(value: Mapping[str, JSONValue]) -> str:
    # Evidence may reuse a state's frozen policy, whose mappings json cannot encode as such.
    def plain(obj: object) -> object:
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON-able")

    return json.dumps(value, allow_nan=False, default=plain)


class RolloutController:
    """Thread-safe owner of every model's RolloutState and of the published routing table."""

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
        self._store = store
        self._ready_versions = ready_versions
        self._admit: Admission | None = None
        self._publish = publish
        self._clock = clock
        self._salt = salt_factory
        self._grace = grace_seconds
        self._allow_pinning = allow_pinning
        self._watch_max_pending = watch_max_pending
        self._on_audit = on_audit
        self._lock = threading.RLock()
        # Replaced, never mutated, so readers may take a reference without the lock.
        self._states: Mapping[str, RolloutState] = MappingProxyType(store.load())
        self._ready: dict[str, frozenset[str]] = {}
        self._table_revision = 0
        self._sequence = 0
        self._subscriptions: list[Subscription] = []
        self._table = self._build()

    # -- reads -------------------------------------------------------------------------------

    def get(self, model: str) -> RolloutState:
        state = self._states.get(model)
        if state is None:
            raise ModelNotFound(model, list(self._states))
        return state

    def states(self) -> list[RolloutState]:
        """Every model's state, by model name."""
        states = self._states
        return [states[name] for name in sorted(states)]

    def table(self) -> RoutingTable:
        return self._table

    # -- writes ------------------------------------------------------------------------------

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
            self._refresh_locked(force=True)
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
                extra=None if extra is None else _dumps(extra),
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

    def sync(self, stored: Mapping[str, RolloutState]) -> list[RolloutState]:
        """Take every stored state newer than ours (written by another process or replica):
        publish a new routing table and tell watchers. Returns the states taken.

        Called by the store's watcher with everything it holds; states at or below our
        revision are ours already (a stale notification never moves a model back).
        """
        with self._lock:
            taken = [
                state
                for name, state in sorted(stored.items())
                if (mine := self._states.get(name)) is None or state.revision > mine.revision
            ]
            if not taken:
                return []
            before = self._states
            self._states = MappingProxyType({**before, **{s.model: s for s in taken}})
            self._refresh_locked(force=True)
            for state in taken:
                self._notify(before.get(state.model), state, _synced(state))
                log.info(
                    "model %s: synced from the store -> %s (revision %s)",
                    state.model,
                    state.phase,
                    state.revision,
                )
        return taken

    def refresh_ready(self) -> bool:
        """Re-read the registry's ready sets; publish a new table if any changed."""
        with self._lock:
            return self._refresh_locked(force=False)

    # -- watch -------------------------------------------------------------------------------

    def subscribe(self, model: str | None = None, max_pending: int | None = None) -> Subscription:
        """Events for every later change (of `model`, or of all models), in commit order."""
        return self.watch(model, max_pending)[1]

    def watch(
        self, model: str | None = None, max_pending: int | None = None
    ) -> tuple[list[RolloutState], Subscription]:
        """The watched states as they are now, and events for every later change: taken
        under the write lock together, so no change falls between the two."""
        sub = Subscription(model, self._watch_max_pending if max_pending is None else max_pending)
        with self._lock:
            self._subscriptions.append(sub)
            current = [s for s in self.states() if model is None or s.model == model]
        return current, sub

    def close_subscriptions(self) -> None:
        """End every watch stream (at shutdown): subscribers see a clean end of stream."""
        with self._lock:
            subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            sub.close()

    def append_audit(
        self,
        model: str,
        operation: str,
        actor: str,
        reason: str,
        extra: Mapping[str, JSONValue] | None = None,
    ) -> AuditEntry:
        """An audit-only row (e.g. a promotion decision that changed nothing)."""
        entry = AuditEntry(
            id=0,
            at=self._clock(),
            actor=actor,
            model=model,
            operation=operation,
            before=None,
            after=None,
            reason=reason,
            extra=_dumps(extra) if extra is not None else None,
        )
        if self._on_audit is None:
            return self._store.append_audit(entry)
        with self._lock:  # listeners hear audit rows in the store's order
            stored = self._store.append_audit(entry)
            self._on_audit(stored)
        return stored

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

    def audit(
        self, model: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        """The audit log (see StateStore.audit)."""
        return self._store.audit(model, limit, after_id)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
        sub.close()

    # -- internals ---------------------------------------------------------------------------

    def _commit(
        self,
        before: RolloutState | None,
        after: RolloutState,
        expected: int | None,
        entry: AuditEntry,
    ) -> CommandResult:
        try:
            stored = self._store.commit(after, expected, entry)
        except RevisionMismatch:
            # Someone else wrote the same store (another replica, an operator's tool): our
            # memory is stale, so take theirs and let the caller re-read and retry.
            log.warning("store revision moved under us for %s; reloading", after.model)
            self._states = MappingProxyType(self._store.load())
            self._refresh_locked(force=True)
            raise
        self._states = MappingProxyType({**self._states, after.model: after})
        if after.model not in self._ready:
            self._ready[after.model] = self._ready_versions(after.model)
        result = CommandResult(before, after, changed=True, audit=stored)
        self._table = self._build()
        self._publish(self._table)
        self._notify(before, after, stored)
        if self._on_audit is not None:
            self._on_audit(stored)
        log.info(
            "model %s: %s by %s -> %s (revision %s)",
            after.model,
            entry.operation,
            entry.actor,
            after.phase,
            after.revision,
        )
        return result

    def _notify(self, before: RolloutState | None, after: RolloutState, entry: AuditEntry) -> None:
        self._sequence += 1
        event = WatchEvent(self._sequence, CommandResult(before, after, True, entry), entry)
        for sub in self._subscriptions:
            sub.offer(event)

    def _refresh_locked(self, *, force: bool) -> bool:
        ready = {model: self._ready_versions(model) for model in self._states}
        if not force and ready == self._ready:
            return False
        self._ready = ready
        self._table = self._build()
        self._publish(self._table)
        return True

    def _build(self) -> RoutingTable:
        self._table_revision += 1
        return build_table(self._states, self._ready, self._allow_pinning, self._table_revision)
