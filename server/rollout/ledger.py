"""RolloutLedger: every model's rollout state in memory, kept equal to the store, and the
watchers of every change.

A state changes here in one of two ways, both under one write lock: `_commit` (this process
wrote it: compare-and-set in the store together with its audit row) or `sync` (another
process or replica of a fleet wrote the same store, and the store's watch says so). Either
way the in-memory states are swapped, a fresh RoutingTable is published (rollout.publisher)
and watchers hear the change (rollout.changes). Readers (get, states, table) never wait on
the store or the lock: the states mapping is replaced, never mutated.

RolloutController (rollout.controller) is the ledger that takes commands: it validates each
one with the stage machine and commits the result here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeAlias

from server.clock import Clock
from server.errors import ModelNotFound, RevisionMismatch
from server.rollout.changes import CommandResult, Subscription, Watchers
from server.rollout.publisher import Publish, ReadyVersions, TablePublisher
from server.rollout.router import RoutingTable
from server.rollout.state import JSONValue, RolloutState
from server.rollout.store import AuditEntry, StateStore

__all__ = ["AuditListener", "RolloutLedger", "evidence_json"]

log = logging.getLogger(__name__)

#: Hears every audit row this controller commits (not the rows other replicas wrote), under
#: the write lock, in commit order: it must not block (server.notify queues and returns).
AuditListener: TypeAlias = Callable[[AuditEntry], None]


def evidence_json(value: Mapping[str, JSONValue]) -> str:
    """An audit row's evidence (`extra`) as stored."""

    # Evidence may reuse a state's frozen policy, whose mappings json cannot encode as such.
    def plain(obj: object) -> object:
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON-able")

    return json.dumps(value, allow_nan=False, default=plain)


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


class RolloutLedger:
    """Thread-safe owner of every model's RolloutState and of the published routing table."""

    def __init__(
        self,
        store: StateStore,
        *,
        ready_versions: ReadyVersions,
        publish: Publish,
        clock: Clock,
        allow_pinning: bool,
        watch_max_pending: int,
        on_audit: AuditListener | None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_audit = on_audit
        self._lock = threading.RLock()
        # Replaced, never mutated, so readers may take a reference without the lock.
        self._states: Mapping[str, RolloutState] = MappingProxyType(store.load())
        self._watchers = Watchers(watch_max_pending)
        self._tables = TablePublisher(ready_versions, publish, allow_pinning, self._states)

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
        return self._tables.table

    # -- following the store and the registry ------------------------------------------------

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
            self._publish_all()
            for state in taken:
                self._watchers.offer(before.get(state.model), state, _synced(state))
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
            return self._tables.refresh(self._states, force=False)

    # -- watch -------------------------------------------------------------------------------

    def subscribe(self, model: str | None = None, max_pending: int | None = None) -> Subscription:
        """Events for every later change (of `model`, or of all models), in commit order."""
        return self.watch(model, max_pending)[1]

    def watch(
        self, model: str | None = None, max_pending: int | None = None
    ) -> tuple[list[RolloutState], Subscription]:
        """The watched states as they are now, and events for every later change: taken
        under the write lock together, so no change falls between the two."""
        sub = self._watchers.opened(model, max_pending)
        with self._lock:
            self._watchers.add(sub)
            current = [s for s in self.states() if model is None or s.model == model]
        return current, sub

    def close_subscriptions(self) -> None:
        """End every watch stream (at shutdown): subscribers see a clean end of stream."""
        with self._lock:
            subs = self._watchers.take_all()
        for sub in subs:
            sub.close()

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._watchers.remove(sub)
        sub.close()

    # -- audit -------------------------------------------------------------------------------

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
            extra=evidence_json(extra) if extra is not None else None,
        )
        if self._on_audit is None:
            return self._store.append_audit(entry)
        with self._lock:  # listeners hear audit rows in the store's order
            stored = self._store.append_audit(entry)
            self._on_audit(stored)
        return stored

    def audit(
        self, model: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        """The audit log (see StateStore.audit)."""
        return self._store.audit(model, limit, after_id)

    # -- committing (under the write lock) ---------------------------------------------------

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
            self._publish_all()
            raise
        self._states = MappingProxyType({**self._states, after.model: after})
        self._tables.committed(self._states, after.model)
        self._watchers.offer(before, after, stored)
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
        return CommandResult(before, after, changed=True, audit=stored)

    def _publish_all(self) -> None:
        """Re-read every ready set and publish a new table (the states changed)."""
        self._tables.refresh(self._states, force=True)
