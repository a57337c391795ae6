"""Tests of the state stores: compare-and-set, the audit log, durability, WAL."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.errors import InvalidInput, RevisionMismatch
from server.rollout.state import Phase, RolloutState, initial_state
from server.rollout.store import SCHEMA_VERSION, AuditEntry, SqliteStore, StateStore
from server.testing import MemoryStore


def entry(model: str, operation: str = "op", at: float = 1.0) -> AuditEntry:
    return AuditEntry(
        id=0,
        at=at,
        actor="alice",
        model=model,
        operation=operation,
        before=None,
        after=None,
        reason="because",
        extra='{"k":1}',
    )


def bump(state: RolloutState) -> RolloutState:
    return dataclasses.replace(state, revision=state.revision + 1, updated_at=state.updated_at + 1)


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    s: StateStore = (
        SqliteStore(tmp_path / "state.db") if request.param == "sqlite" else MemoryStore()
    )
    yield s
    s.close()


def test_commit_requires_absence_when_expected_is_none(store: StateStore) -> None:
    first = initial_state("m", "1", 1.0)
    stored = store.commit(first, None, entry("m"))
    assert stored.id == 1 and stored.operation == "op"
    assert store.load() == {"m": first}
    with pytest.raises(RevisionMismatch) as caught:
        store.commit(first, None, entry("m"))
    assert (caught.value.expected, caught.value.actual) == (0, 1)


def test_commit_compares_and_sets_the_revision(store: StateStore) -> None:
    first = initial_state("m", "1", 1.0)
    store.commit(first, None, entry("m"))
    second = bump(first)
    store.commit(second, 1, entry("m"))
    with pytest.raises(RevisionMismatch, match="at revision 2, not 1"):
        store.commit(bump(first), 1, entry("m"))
    with pytest.raises(RevisionMismatch):
        store.commit(initial_state("new", "1", 1.0), 3, entry("new"))
    # A lost CAS writes neither the state nor the audit row.
    assert store.load() == {"m": second}
    assert [e.id for e in store.audit()] == [1, 2]


def test_commit_refuses_an_audit_row_for_another_model(store: StateStore) -> None:
    with pytest.raises(ValueError, match="audit entry for 'other'"):
        store.commit(initial_state("m", "1", 1.0), None, entry("other"))


def test_audit_filtering_limit_and_cursor(store: StateStore) -> None:
    a = initial_state("a", "1", 1.0)
    store.commit(a, None, entry("a", "adopt"))  # id 1
    store.append_audit(entry("*", "kill_switch"))  # id 2
    store.commit(bump(a), 1, entry("a", "start"))  # id 3
    store.append_audit(entry("b", "hold"))  # id 4
    store.append_audit(entry("a", "hold"))  # id 5

    assert [e.id for e in store.audit()] == [1, 2, 3, 4, 5]
    assert [e.id for e in store.audit("a")] == [1, 3, 5]
    assert [e.id for e in store.audit("*")] == [2]
    assert [e.id for e in store.audit(limit=2)] == [4, 5]  # no cursor: the newest, newest last
    assert [e.id for e in store.audit(after_id=1, limit=2)] == [2, 3]  # cursor: the next page
    assert [e.id for e in store.audit("a", after_id=1, limit=1)] == [3]
    assert store.audit(after_id=5) == []
    got = store.audit(after_id=1, limit=1)[0]
    assert got == dataclasses.replace(entry("*", "kill_switch"), id=2)


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_audit_limit_out_of_range(store: StateStore, limit: int) -> None:
    with pytest.raises(InvalidInput, match=r"audit limit must be in 1\.\.10000"):
        store.audit(limit=limit)


def test_sqlite_is_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    states = {
        "a": initial_state("a", "1", 1.0),
        "b": RolloutState(
            model="b",
            stable="1",
            candidate="2",
            phase=Phase.CANARY,
            canary_ppm=10,
            salt="s",
            rollout_id=1,
            policy={"steps": [1, 2]},
        ),
    }
    for state in states.values():
        store.commit(state, None, entry(state.model))
    audit = store.audit()
    store.close()

    reopened = SqliteStore(path)
    assert reopened.load() == states
    assert reopened.audit() == audit
    # Ids keep growing after reopen.
    assert reopened.append_audit(entry("a")).id == 3
    reopened.close()


def test_sqlite_uses_wal_and_records_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    assert store.journal_mode() == "wal"
    store.close()
    raw = sqlite3.connect(path)
    try:
        # WAL mode is persistent in the file, so a fresh connection sees it too.
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="schema version 2"):
        SqliteStore(path)


def test_sqlite_detects_a_row_that_disagrees_with_its_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.commit(initial_state("m", "1", 1.0), None, entry("m"))
    store.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE rollout_state SET revision = 9")
    raw.commit()
    raw.close()
    store = SqliteStore(path)
    with pytest.raises(ValueError, match="inconsistent"):
        store.load()
    store.close()


def test_two_sqlite_handles_on_one_file_share_the_cas(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    one, two = SqliteStore(path), SqliteStore(path)
    first = initial_state("m", "1", 1.0)
    one.commit(first, None, entry("m"))
    two.commit(bump(first), 1, entry("m"))
    with pytest.raises(RevisionMismatch):
        one.commit(bump(first), 1, entry("m"))
    assert one.load() == two.load() == {"m": bump(first)}
    one.close()
    two.close()
