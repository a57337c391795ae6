"""What the rollout controller hands out: the CommandResult of a command, and watch streams.

A Subscription is a bounded queue of WatchEvents for one watcher; the controller offers every
committed change to each subscription (its Watchers) under its write lock, so offering never
blocks.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

from server.errors import Overloaded
from server.rollout.state import RolloutState
from server.rollout.store import AuditEntry

__all__ = ["CommandResult", "Subscription", "WatchEvent", "Watchers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    """The result of one command: `after is before` exactly when nothing changed."""

    before: RolloutState | None  # None only when adopt() created the state
    after: RolloutState
    changed: bool
    audit: AuditEntry | None = None  # the committed audit row; None for no-ops and dry runs


@dataclass(frozen=True)
class WatchEvent:
    sequence: int  # 1, 2, 3 ... in commit order for this controller's lifetime
    result: CommandResult
    audit: AuditEntry


class Subscription:
    """A bounded queue of WatchEvents for one watcher.

    A watcher that falls behind is not silently skipped ahead (it would miss a change and hold a
    wrong picture): the subscription is marked lost and get() raises Overloaded, telling the
    client to re-read the state and subscribe again.
    """

    def __init__(self, model: str | None, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.model = model
        self.max_pending = max_pending
        self._events: collections.deque[WatchEvent] = collections.deque()
        self._cond = threading.Condition()
        self._lost = False
        self._closed = False

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, event: WatchEvent) -> None:
        # Called under the controller's write lock: must never block.
        if self.model is not None and event.result.after.model != self.model:
            return
        with self._cond:
            if self._lost or self._closed:
                return
            if len(self._events) >= self.max_pending:
                self._lost = True
                self._events.clear()
                log.warning("watch subscription overflowed at %s pending events", self.max_pending)
            else:
                self._events.append(event)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None on timeout or once closed. Raises Overloaded once lost."""
        with self._cond:
            self._cond.wait_for(lambda: self._events or self._lost or self._closed, timeout)
            if self._lost:
                raise Overloaded(
                    f"watch fell more than {self.max_pending} changes behind; "
                    "read the rollout state again and resubscribe"
                )
            return self._events.popleft() if self._events else None


class Watchers:
    """The open subscriptions and the sequence of events offered to them.

    Guarded by the controller's write lock: every method but `opened` is called under it.
    """

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending  # each subscription's default bound
        self._subscriptions: list[Subscription] = []
        self._sequence = 0

    def opened(self, model: str | None, max_pending: int | None) -> Subscription:
        """A new subscription, not offered anything until `add`ed."""
        return Subscription(model, self.max_pending if max_pending is None else max_pending)

    def add(self, sub: Subscription) -> None:
        self._subscriptions.append(sub)

    def remove(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def take_all(self) -> list[Subscription]:
        """Every subscription, forgotten here (the caller closes them outside the lock)."""
        subs, self._subscriptions = self._subscriptions, []
        return subs

    def offer(self, before: RolloutState | None, after: RolloutState, entry: AuditEntry) -> None:
        """One committed change, as the next event in sequence, to every subscription."""
        self._sequence += 1
        event = WatchEvent(self._sequence, CommandResult(before, after, True, entry), entry)
        for sub in self._subscriptions:
            sub.offer(event)
