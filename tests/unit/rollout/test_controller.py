"""Tests of RolloutController on a real SQLite store with a fake clock."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from server.errors import InvalidTransition, ModelNotFound, Overloaded, RevisionMismatch
from server.rollout.changes import WatchEvent
from server.rollout.controller import RolloutController
from server.rollout.router import RoutingTable
from server.rollout.state import (
    JSONValue,
    Pause,
    Phase,
    Promote,
    Rollback,
    SetShadow,
    SetWeight,
    StartRollout,
)
from server.rollout.store import SqliteStore
from server.testing import FakeClock


class Env:
    """One controller plus the things it talks to, reopenable on the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = FakeClock(now=1_000.0, step=1.0)
        self.ready: dict[str, frozenset[str]] = {
            "m": frozenset({"1", "2", "3"}),
            "n": frozenset({"1", "2"}),
            "o": frozenset({"1"}),
        }
        self.published: list[RoutingTable] = []
        self.salts = (f"salt{i}" for i in itertools.count(1))
        self.stores: list[SqliteStore] = []

    def controller(self, grace: float = 60.0) -> RolloutController:
        store = SqliteStore(self.path)
        self.stores.append(store)
        return RolloutController(
            store,
            ready_versions=lambda model: self.ready.get(model, frozenset()),
            publish=self.published.append,
            clock=self.clock,
            salt_factory=lambda: next(self.salts),
            grace_seconds=grace,
            allow_pinning=False,
        )

    def audit_count(self) -> int:
        return len(self.stores[-1].audit(limit=10_000))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "state.db")
    yield e
    for store in e.stores:
        store.close()


@pytest.fixture
def ctl(env: Env) -> RolloutController:
    c = env.controller()
    c.adopt({"m": "1", "n": "1", "o": "1"})
    return c


def test_adopt_persists_and_keeps_saved_stable(env: Env) -> None:
    ctl = env.controller()
    outcomes = ctl.adopt({"m": "1"})
    assert [(o.before, o.after.stable, o.changed) for o in outcomes] == [(None, "1", True)]
    audit = env.stores[-1].audit()
    assert [(e.model, e.operation, e.actor, e.before) for e in audit] == [
        ("m", "adopt", "server", None)
    ]
    assert env.published[-1].models["m"].stable == "1"

    again = env.controller()
    assert again.adopt({"m": "3", "n": "2"})[0].after.model == "n"
    assert again.get("m").stable == "1"  # a newer version on disk does not promote itself
    assert again.get("n").stable == "2"
    assert env.published[-1].models["m"].stable == "1"
    assert env.audit_count() == 2


def test_execute_writes_one_audit_row_per_change(env: Env, ctl: RolloutController) -> None:
    base = env.audit_count()
    out = ctl.execute("m", StartRollout("2", canary_ppm=1_000), actor="alice", reason="try v2")
    assert out.changed and out.after.phase is Phase.CANARY and out.after.salt == "salt1"
    assert out.audit is not None and out.before is not None
    assert (out.audit.actor, out.audit.operation, out.audit.reason) == ("alice", "start", "try v2")
    assert out.audit.before == out.before.to_json() and out.audit.after == out.after.to_json()
    assert env.audit_count() == base + 1

    same = ctl.execute("m", SetWeight(1_000), actor="alice", reason="again")
    assert not same.changed and same.after is same.before and same.audit is None
    assert env.audit_count() == base + 1

    published = len(env.published)
    dry = ctl.execute("m", SetWeight(5_000), actor="alice", reason="preview", dry_run=True)
    assert dry.changed and dry.after.canary_ppm == 5_000 and dry.audit is None
    assert ctl.get("m").canary_ppm == 1_000
    assert env.audit_count() == base + 1 and len(env.published) == published

    policy = MappingProxyType({"gate": MappingProxyType({"max": 1})})
    extra: dict[str, JSONValue] = {"window": [1, 2], "policy": policy}
    ctl.execute("m", SetWeight(5_000), actor="bob", reason="step", extra=extra)
    last = env.stores[-1].audit(limit=1)[0]
    assert (last.actor, last.operation) == ("bob", "set_weight")
    assert last.extra == '{"window": [1, 2], "policy": {"gate": {"max": 1}}}'


def test_execute_errors(ctl: RolloutController, env: Env) -> None:
    """Refused commands say why and write nothing to the audit log."""
    base = env.audit_count()
    with pytest.raises(ModelNotFound, match="known models: m, n, o"):
        ctl.execute("zzz", Pause(), actor="a", reason="r")
    with pytest.raises(RevisionMismatch, match="at revision 1, not 7"):
        ctl.execute("m", StartRollout("2"), actor="a", reason="r", expected_revision=7)
    with pytest.raises(InvalidTransition, match="there is no candidate"):
        ctl.execute("m", Promote(), actor="a", reason="r")
    with pytest.raises(InvalidTransition, match="not loaded and ready"):
        ctl.execute("o", StartRollout("2"), actor="a", reason="r", dry_run=True)
    assert env.audit_count() == base


def test_promotion_uses_the_clock_for_the_grace_deadline(env: Env) -> None:
    ctl = env.controller(grace=30.0)
    ctl.adopt({"m": "1"})
    ctl.execute("m", StartRollout("2", canary_ppm=10), actor="a", reason="r")
    out = ctl.execute("m", Promote(), actor="a", reason="r")
    assert out.after.previous_stable == "1"
    assert out.after.previous_stable_until == env.clock.now + 30.0
    assert out.after.updated_at == env.clock.now


def test_compare_and_set_under_contention(env: Env, ctl: RolloutController) -> None:
    ctl.execute("m", StartRollout("2", shadow_ppm=1), actor="a", reason="r")
    threads, rounds = 8, 25
    barrier = threading.Barrier(threads)
    wins: list[int] = []
    losses: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            for j in range(rounds):
                barrier.wait()
                revision = ctl.get("m").revision
                barrier.wait()  # everyone read before anyone writes: real contention
                try:
                    # Distinct values, so every winning write is a change, never a no-op.
                    ppm = 2 + i * rounds + j
                    command = SetShadow(ppm)
                    ctl.execute(
                        "m", command, actor=f"t{i}", reason="race", expected_revision=revision
                    )
                except RevisionMismatch:
                    with lock:
                        losses.append(revision)
                else:
                    with lock:
                        wins.append(revision)
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not failures
    assert len(wins) == rounds and len(set(wins)) == rounds  # exactly one winner per revision
    assert len(losses) == rounds * (threads - 1)
    # Every write to "m" (adopt, start, the winners) bumped the revision by exactly one.
    final = ctl.get("m").revision
    assert final == 1 + 1 + len(wins)
    assert len(env.stores[-1].audit("m", limit=10_000)) == final


def test_reopen_gives_identical_states(env: Env, ctl: RolloutController) -> None:
    ctl.execute("m", StartRollout("2", canary_ppm=10, policy={"steps": [1]}), actor="a", reason="r")
    ctl.execute("n", StartRollout("2"), actor="a", reason="r")
    ctl.execute("n", Rollback(), actor="a", reason="r")
    reopened = env.controller()
    assert reopened.states() == ctl.states()
    reopened.adopt({"m": "3", "n": "1", "o": "1"})
    assert reopened.table().models == ctl.table().models


def test_store_conflict_from_another_writer_reloads(env: Env, ctl: RolloutController) -> None:
    other = env.controller()
    other.execute("m", StartRollout("2"), actor="a", reason="other replica")
    with pytest.raises(RevisionMismatch):
        ctl.execute("m", StartRollout("3"), actor="a", reason="stale")
    assert ctl.get("m") == other.get("m")
    assert ctl.table().models["m"].rollout is not None


def test_kill_switch(env: Env, ctl: RolloutController) -> None:
    """The kill switch rolls back every active candidate, each with its audit row."""
    ctl.execute("m", StartRollout("2", canary_ppm=10), actor="a", reason="r")
    ctl.execute("n", StartRollout("2", shadow_ppm=10), actor="a", reason="r")
    base = env.audit_count()

    preview = ctl.kill_switch(actor="oncall", reason="pager", dry_run=True)
    assert [o.after.phase for o in preview] == [Phase.ROLLED_BACK] * 2
    assert env.audit_count() == base and ctl.get("m").phase is Phase.CANARY

    outcomes = ctl.kill_switch(actor="oncall", reason="pager")
    assert [o.after.model for o in outcomes] == ["m", "n"]
    assert all(o.after.phase is Phase.ROLLED_BACK for o in outcomes)
    rows = env.stores[-1].audit(after_id=0, limit=2)
    assert [(r.model, r.operation, r.actor) for r in rows] == [
        ("m", "kill_switch", "oncall"),
        ("n", "kill_switch", "oncall"),
    ]
    assert all(m.rollout is None for m in env.published[-1].models.values())
    assert ctl.kill_switch(actor="oncall", reason="again") == []
    assert env.audit_count() == base + 2


def test_publish_reflects_every_change(env: Env, ctl: RolloutController) -> None:
    start = len(env.published)
    ctl.execute("m", StartRollout("2", shadow_ppm=7), actor="a", reason="r")
    ctl.execute("m", SetWeight(500), actor="a", reason="r")
    ctl.execute("m", SetWeight(500), actor="a", reason="no-op")
    ctl.execute("m", Promote(), actor="a", reason="r")
    tables = env.published[start:]
    assert len(tables) == 3
    rollouts = [t.models["m"].rollout for t in tables]
    assert rollouts[0] is not None and (rollouts[0].canary_ppm, rollouts[0].shadow_ppm) == (0, 7)
    assert rollouts[0].salt == "salt1"
    assert rollouts[1] is not None and rollouts[1].canary_ppm == 500
    assert rollouts[2] is None and tables[2].models["m"].stable == "2"
    assert [t.revision for t in tables] == sorted({t.revision for t in tables})
    assert all(not t.allow_pinning for t in tables)
    assert tables[-1] is ctl.table()
    assert tables[-1].models["m"].ready == frozenset({"1", "2", "3"})


def test_refresh_ready_publishes_only_on_change(env: Env, ctl: RolloutController) -> None:
    start = len(env.published)
    assert not ctl.refresh_ready()
    env.ready["o"] = frozenset({"1", "4"})
    assert ctl.refresh_ready()
    assert len(env.published) == start + 1
    assert env.published[-1].models["o"].ready == frozenset({"1", "4"})


def test_watch_sees_every_change_in_order(ctl: RolloutController) -> None:
    sub = ctl.subscribe()
    only_n = ctl.subscribe(model="n")
    ctl.execute("m", StartRollout("2"), actor="a", reason="r")
    ctl.execute("m", SetWeight(10), actor="a", reason="r")
    ctl.execute("m", SetWeight(10), actor="a", reason="no-op")
    ctl.execute("n", StartRollout("2"), actor="a", reason="r")
    ctl.execute("m", Rollback(), actor="a", reason="r")

    events: list[WatchEvent] = []
    while (event := sub.get(timeout=0)) is not None:
        events.append(event)
    first = events[0].sequence  # the three adopt commits came before
    assert [e.sequence for e in events] == [first, first + 1, first + 2, first + 3]
    assert [(e.audit.model, e.audit.operation) for e in events] == [
        ("m", "start"),
        ("m", "set_weight"),
        ("n", "start"),
        ("m", "rollback"),
    ]
    assert [e.audit.id for e in events] == sorted(e.audit.id for e in events)
    assert events[-1].result.after == ctl.get("m")
    n_event = only_n.get(timeout=0)
    assert n_event is not None and n_event.sequence == first + 2
    assert only_n.get(timeout=0) is None

    ctl.unsubscribe(sub)
    ctl.execute("m", StartRollout("3"), actor="a", reason="r")
    assert sub.closed and sub.get(timeout=0) is None


def test_watch_wakes_a_blocked_reader(ctl: RolloutController) -> None:
    sub = ctl.subscribe()
    got: list[WatchEvent | None] = []
    reader = threading.Thread(target=lambda: got.append(sub.get(timeout=10)))
    reader.start()
    ctl.execute("m", StartRollout("2"), actor="a", reason="r")
    reader.join()
    assert got[0] is not None and got[0].audit.operation == "start"


def test_overflowing_subscription_becomes_lost(ctl: RolloutController) -> None:
    slow = ctl.subscribe(max_pending=2)
    fast = ctl.subscribe(max_pending=2)
    ctl.execute("m", StartRollout("2"), actor="a", reason="r")
    ctl.execute("m", SetWeight(1), actor="a", reason="r")
    first = fast.get(timeout=0)
    assert first is not None and fast.get(timeout=0) is not None
    ctl.execute("m", SetWeight(2), actor="a", reason="r")
    assert slow.lost and not fast.lost
    with pytest.raises(Overloaded, match="read the rollout state again and resubscribe"):
        slow.get(timeout=0)
    fast_event = fast.get(timeout=0)
    assert fast_event is not None and fast_event.sequence == first.sequence + 2
