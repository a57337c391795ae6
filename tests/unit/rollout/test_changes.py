"""Watchers: every committed change goes to each open subscription, numbered in order."""

from __future__ import annotations

import pytest

from server.rollout.changes import Watchers
from server.rollout.state import initial_state
from server.rollout.store import AuditEntry


def row(model: str) -> AuditEntry:
    return AuditEntry(1, 1.0, "alice", model, "adopt", None, None, "test")


def test_events_are_numbered_in_order_and_filtered_by_model() -> None:
    watchers = Watchers(max_pending=8)
    everything = watchers.opened(None, None)
    only_n = watchers.opened("n", None)
    watchers.add(everything)
    watchers.add(only_n)
    for model in ("m", "n", "m"):
        watchers.offer(None, initial_state(model, "1", 1.0), row(model))
    got = [everything.get(0) for _ in range(3)]
    assert [(e.sequence, e.result.after.model) for e in got if e] == [(1, "m"), (2, "n"), (3, "m")]
    event = only_n.get(0)
    assert event is not None and (event.sequence, event.audit.model) == (2, "n")
    assert event.result.changed and event.result.before is None
    assert only_n.get(0) is None


def test_a_subscription_hears_nothing_before_it_is_added_or_after_it_is_removed() -> None:
    watchers = Watchers(max_pending=8)
    sub = watchers.opened(None, None)
    watchers.offer(None, initial_state("m", "1", 1.0), row("m"))
    watchers.add(sub)
    watchers.remove(sub)
    watchers.remove(sub)  # twice is harmless
    watchers.offer(None, initial_state("m", "1", 1.0), row("m"))
    assert sub.get(0) is None


def test_take_all_forgets_every_subscription() -> None:
    watchers = Watchers(max_pending=8)
    subs = [watchers.opened(None, None) for _ in range(2)]
    for sub in subs:
        watchers.add(sub)
    assert watchers.take_all() == subs
    assert watchers.take_all() == []


def test_the_default_bound_applies_unless_a_subscription_names_its_own() -> None:
    watchers = Watchers(max_pending=8)
    assert watchers.opened(None, None).max_pending == 8
    assert watchers.opened("m", 2).max_pending == 2
    with pytest.raises(ValueError, match="at least 1"):
        watchers.opened(None, 0)
