"""Fakes beside their seams, for tests: a clock, an in-memory store and a runner.

Each stands in for one constructor argument of the real thing (`clock=`, `store`,
`runner_factory=`), so tests inject them instead of monkeypatching.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from server.errors import RevisionMismatch
from server.rollout.state import RolloutState
from server.rollout.store import AuditEntry, OnChange, check_commit, check_limit
from server.serving.signature import Signature

__all__ = ["FakeClock", "FakeRunner", "MemoryStore"]

#: How long a FakeRunner waits on its gate before giving up (never a test's own timing).
GATE_TIMEOUT_S = 5.0


class FakeClock:
    """A clock that moves only when told: `now`, `advance(s)`, or `step` on every reading."""

    def __init__(self, now: float = 0.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step  # added before each reading (distinct readings order events)

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryStore:
    """In-memory StateStore for unit tests. States go through JSON like the durable store's do."""

    def __init__(self) -> None:
        self.name = "memory"
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._audit: list[AuditEntry] = []
        self._watchers: list[OnChange] = []

    def load(self) -> dict[str, RolloutState]:
        with self._lock:
            saved = dict(self._states)
        return {model: RolloutState.from_json(text) for model, text in saved.items()}

    def commit(
        self, state: RolloutState, expected_revision: int | None, audit: AuditEntry
    ) -> AuditEntry:
        check_commit(state, audit)
        with self._lock:
            text = self._states.get(state.model)
            actual = None if text is None else RolloutState.from_json(text).revision
            if actual != expected_revision:
                raise RevisionMismatch(state.model, expected_revision or 0, actual or 0)
            self._states[state.model] = state.to_json()
            stored = self._append(audit)
            watchers = list(self._watchers)
        if watchers:
            # Off the committing thread, as a real store's watcher would: a controller commits
            # under its own lock, and another controller's sync() takes that one's lock.
            states = self.load()
            for on_change in watchers:
                threading.Thread(target=on_change, args=(states,), daemon=True).start()
        return stored

    def append_audit(self, entry: AuditEntry) -> AuditEntry:
        with self._lock:
            return self._append(entry)

    def _append(self, entry: AuditEntry) -> AuditEntry:
        stored = dataclasses.replace(entry, id=len(self._audit) + 1)
        self._audit.append(stored)
        return stored

    def audit(
        self, model: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        check_limit(limit)
        with self._lock:
            rows = [
                e for e in self._audit if e.id > after_id and (model is None or e.model == model)
            ]
        return rows[:limit] if after_id > 0 else rows[-limit:]

    def watch(self, on_change: OnChange) -> None:
        """Every controller sharing this store hears of each commit (a fleet in one process)."""
        with self._lock:
            self._watchers.append(on_change)

    def close(self) -> None:
        pass


class FakeRunner:
    """A Runner that echoes input `x` as every output: it can wait on `gate`, raise `error`,
    raise on a run whose `x` has a value above `fail_above` (a model failing on one bad row),
    or advance `clock` by `x[0]` seconds (a run that takes that long on the fake clock).
    `runs` keeps every run's `x`, in order."""

    def __init__(
        self,
        gate: threading.Event | None = None,
        error: Exception | None = None,
        clock: FakeClock | None = None,
        signature: Signature | None = None,
        fail_above: float | None = None,
    ) -> None:
        self.gate, self.error, self.clock = gate, error, clock
        self.fail_above = fail_above
        self.runs: list[npt.NDArray[np.generic]] = []
        self._signature = signature or Signature(inputs=(), outputs=())
        self.started = threading.Event()
        self.calls = 0

    @property
    def signature(self) -> Signature:
        return self._signature

    def run(
        self, outputs: Sequence[str], feeds: dict[str, npt.NDArray[np.generic]]
    ) -> list[npt.NDArray[np.generic]]:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            self.gate.wait(GATE_TIMEOUT_S)
        if self.error is not None:
            raise self.error
        x = feeds["x"]
        self.runs.append(x)
        if self.fail_above is not None and bool((x > self.fail_above).any()):  # type: ignore[operator]
            raise ValueError(f"x above {self.fail_above}")
        if self.clock is not None:
            self.clock.advance(float(x.flat[0]))
        return [x for _ in outputs]
