"""Which version served a request: a bounded in-memory table of request id → `Served`.

The data plane records every answered request that carries an id (`ModelInferRequest.id`);
an outcome reported later by that id is joined to the version, stage and route reason that
served it. Bounded twice: at most `max_entries` (the oldest record goes first) and no older
than `ttl_s` (an expired record is gone, as if evicted). Records are inserted in time order,
so the oldest record is also the first to expire; a request id used again replaces its
record and moves it to the young end. One lock guards the table: the hot path holds it for
one insert and at most one eviction.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from server.clock import Clock
from server.rollout.router import RouteReason, Stage

__all__ = ["Served", "ServedRequests"]


class Served(NamedTuple):
    """The answer a request got: the model, the version and its stage, why it was routed so,
    whether the request carried a routing key, and when (the table's clock, seconds)."""

    model: str
    version: str
    stage: Stage
    reason: RouteReason
    keyed: bool
    at: float

    @property
    def randomized(self) -> bool:
        """Whether the version was assigned at random: by its key's hash, or to stable because no
        rollout ran and the call had a key (keyless callers may differ from keyed ones). Only
        these outcomes compare versions without bias; cohort rules, pins, keyless calls and
        overload fallbacks pick their callers, so their outcomes are counted but never gate."""
        return self.reason is RouteReason.HASH or (
            self.reason is RouteReason.NO_ROLLOUT and self.keyed
        )


class ServedRequests:
    """Request id → Served, bounded by count and age."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Clock = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._table: OrderedDict[str, tuple[str, str, Stage, RouteReason, bool, float]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.evicted = 0  # records pushed out by max_entries before they expired

    def record(
        self,
        request_id: str,
        model: str,
        version: str,
        stage: Stage,
        reason: RouteReason,
        keyed: bool,
    ) -> None:
        """Remember who served `request_id` (the request path: one insert, one eviction).
        A plain tuple: building the named one costs a microsecond more per request."""
        at = self._clock()
        table = self._table
        with self._lock:
            if request_id in table:
                table.move_to_end(request_id)
            table[request_id] = (model, version, stage, reason, keyed, at)
            if len(table) > self.max_entries:
                _, oldest = table.popitem(last=False)
                if oldest[5] >= at - self.ttl_s:
                    self.evicted += 1

    def lookup(self, request_id: str) -> Served | None:
        """Who served `request_id`, or None when it was never recorded, evicted or expired."""
        now = self._clock()
        with self._lock:
            row = self._table.get(request_id)
            if row is None:
                return None
            if row[5] < now - self.ttl_s:
                self._expire(now)
                return None
            return Served._make(row)

    def _expire(self, now: float) -> None:
        """Drop expired records from the old end (the lock is held)."""
        table, horizon = self._table, now - self.ttl_s
        while table:
            key = next(iter(table))
            if table[key][5] >= horizon:
                break
            del table[key]

    def __len__(self) -> int:
        return len(self._table)
