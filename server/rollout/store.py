"""Durable rollout state and the audit log, behind the small StateStore interface.

SqliteStore is the embedded default (one file, WAL, synchronous=FULL, so a committed change
survives kill -9 and power loss); server.testing.MemoryStore is a fake with the same semantics;
server.fleet.store.EtcdStore is the shared backend of a fleet (docs/fleet.md).

Every store has a watch: `watch(on_change)` calls `on_change(states)` from a background thread
with every saved state whenever the store may have changed — through this process or any
other — so each process republishes its routing snapshot (RolloutController.sync).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from server.errors import InvalidInput, RevisionMismatch
from server.rollout.state import RolloutState
from server.ticker import Ticker

__all__ = [
    "MAX_AUDIT_LIMIT",
    "SCHEMA_VERSION",
    "AuditEntry",
    "OnChange",
    "SqliteStore",
    "StateStore",
    "check_commit",
    "check_limit",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_AUDIT_LIMIT = 10_000


@dataclass(frozen=True)
class AuditEntry:
    """One audit row: who did what to which model, when and why, with the state before and after."""

    id: int  # assigned by the store; 0 until committed
    at: float  # epoch seconds
    actor: str  # the admin token's name, or "server" / "promotion" for the process itself
    model: str  # "*" for a server-wide entry
    operation: str
    before: str | None  # RolloutState JSON
    after: str | None
    reason: str
    extra: str | None = None  # JSON: decision evidence and the like


#: Called (from the store's watcher thread) with every saved state, by model name.
OnChange: TypeAlias = Callable[[Mapping[str, RolloutState]], object]


class StateStore(Protocol):
    #: Where the state lives, for messages ("sqlite:PATH", "etcd://HOST:PORT/PREFIX").
    name: str

    def load(self) -> dict[str, RolloutState]:
        """Every saved state, by model name."""
        ...

    def commit(
        self, state: RolloutState, expected_revision: int | None, audit: AuditEntry
    ) -> AuditEntry:
        """Write `state` and `audit` in one transaction if the stored revision is as expected.

        expected_revision None means the model must have no saved state yet. Raises
        RevisionMismatch otherwise. Returns `audit` with its assigned id.
        """
        ...

    def append_audit(self, entry: AuditEntry) -> AuditEntry:
        """Record a decision that changed nothing; returns it with its id."""
        ...

    def audit(
        self, model: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        """Audit rows, newest last; see check_limit for what `after_id` selects."""
        ...

    def watch(self, on_change: OnChange) -> None:
        """Start calling `on_change(states)` after each change of the stored states, by anyone
        (at least once a second for SQLite); changes made while the store was unreachable are
        delivered when it is back. Stops at close()."""
        ...

    def close(self) -> None: ...


def check_limit(limit: int) -> None:
    # after_id == 0 asks for the newest `limit` rows (a tail); after_id > 0 asks for the
    # `limit` rows right after that id (a cursor page), so paging forward never skips rows.
    if not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise InvalidInput(f"audit limit must be in 1..{MAX_AUDIT_LIMIT}, got {limit}")


def check_commit(state: RolloutState, audit: AuditEntry) -> None:
    if audit.model != state.model:
        raise ValueError(f"audit entry for '{audit.model}' committed with state of '{state.model}'")


_SCHEMA = """
CREATE TABLE rollout_state (
    model      TEXT PRIMARY KEY,
    revision   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reuses an id, even after deletes
    at        REAL NOT NULL,
    actor     TEXT NOT NULL,
    model     TEXT NOT NULL,
    operation TEXT NOT NULL,
    before    TEXT,
    after     TEXT,
    reason    TEXT NOT NULL,
    extra     TEXT
);
CREATE INDEX audit_by_model ON audit (model, id);
"""

_AUDIT_COLUMNS = "id, at, actor, model, operation, before, after, reason, extra"


class SqliteStore:
    """StateStore on one SQLite file. Thread-safe: one connection behind one lock."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        poll_seconds: float = 0.1,
    ) -> None:
        self.path = os.fspath(path)
        self.name = f"sqlite:{self.path}"
        self._lock = threading.Lock()
        self._busy_timeout = busy_timeout
        self._poll_s = poll_seconds
        self._watcher: Ticker | None = None
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT, so the
        # CAS read and the writes cannot interleave with another process's writer.
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL journal mode (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise
        log.info("state store %s open (schema %s)", self.path, SCHEMA_VERSION)

    def _migrate(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # Not executescript(): it would COMMIT the transaction that guards the check.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: schema version {version}, this server knows {SCHEMA_VERSION}"
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def load(self) -> dict[str, RolloutState]:
        with self._lock:
            rows = self._db.execute("SELECT model, revision, state FROM rollout_state").fetchall()
        states: dict[str, RolloutState] = {}
        for model, revision, text in rows:
            state = RolloutState.from_json(text)
            if state.model != model or state.revision != revision:
                raise ValueError(f"{self.path}: row for '{model}' is inconsistent with its state")
            states[model] = state
        return states

    def commit(
        self, state: RolloutState, expected_revision: int | None, audit: AuditEntry
    ) -> AuditEntry:
        check_commit(state, audit)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT revision FROM rollout_state WHERE model = ?", (state.model,)
                ).fetchone()
                actual = None if row is None else int(row[0])
                if actual != expected_revision:
                    raise RevisionMismatch(state.model, expected_revision or 0, actual or 0)
                db.execute(
                    "INSERT INTO rollout_state (model, revision, state, updated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET"
                    " revision = excluded.revision, state = excluded.state,"
                    " updated_at = excluded.updated_at",
                    (state.model, state.revision, state.to_json(), state.updated_at),
                )
                entry = self._insert_audit(audit)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return entry

    def append_audit(self, entry: AuditEntry) -> AuditEntry:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = self._insert_audit(entry)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def _insert_audit(self, e: AuditEntry) -> AuditEntry:
        cursor = self._db.execute(
            "INSERT INTO audit (at, actor, model, operation, before, after, reason, extra)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (e.at, e.actor, e.model, e.operation, e.before, e.after, e.reason, e.extra),
        )
        assert cursor.lastrowid is not None
        return dataclasses.replace(e, id=cursor.lastrowid)

    def audit(
        self, model: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        check_limit(limit)
        where = "WHERE id > ?"
        args: list[object] = [after_id]
        if model is not None:
            where += " AND model = ?"
            args.append(model)
        order = "ASC" if after_id > 0 else "DESC"
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit {where} ORDER BY id {order} LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        entries = [AuditEntry(*row) for row in rows]
        return entries if after_id > 0 else entries[::-1]

    def journal_mode(self) -> str:
        """The journal mode SQLite reports for this connection (tests check it is "wal")."""
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def watch(self, on_change: OnChange) -> None:
        """Poll `PRAGMA data_version` on a second connection: SQLite bumps it whenever another
        connection (another process, or this store's own writer) commits to the file."""
        if self._watcher is not None:
            raise RuntimeError("SqliteStore.watch() may be called once")
        # Only the watcher's thread uses it once the first version is read here.
        db = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        seen = [db.execute("PRAGMA data_version").fetchone()[0]]

        def look() -> None:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != seen[0]:
                seen[0] = version
                on_change(self.load())

        # A locked or vanished file must not end the watch: the ticker logs and goes on.
        self._watcher = Ticker(
            "canaryserve-store-watch",
            self._poll_s,
            look,
            log=log,
            failure=f"state store {self.path}: watch could not reload",
            on_stop=db.close,  # by the watch's own thread, after its last look
        )
        self._watcher.start()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop(2.0)  # its thread closes the watch connection as it ends
        with self._lock:
            self._db.close()
