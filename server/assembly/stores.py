"""The state store a server starts on: SQLite in the state directory, or etcd shared by a fleet
(with the election of the promotion leader)."""

from __future__ import annotations

from server.config import Config, ConfigError
from server.errors import StoreUnavailable
from server.fleet.client import parse_store_url, wait_reachable
from server.fleet.election import Election
from server.fleet.store import EtcdStore
from server.rollout.store import SqliteStore, StateStore

__all__ = ["STATE_DB", "STORE_START_WAIT_S", "etcd_store", "state_store"]

#: The SQLite file in `state_dir` when no `store` is configured.
STATE_DB = "state.db"
#: How long a server waits at start for its etcd, which may be starting beside it.
STORE_START_WAIT_S = 10.0


def etcd_store(url: str) -> EtcdStore:
    """The etcd store at `url`, once reachable; ConfigError when it is not within the wait."""
    try:
        target = parse_store_url(url)
    except ValueError as exc:
        raise ConfigError(f"'store': {exc}") from None
    try:
        wait_reachable(target, STORE_START_WAIT_S)
        return EtcdStore(target)
    except StoreUnavailable as exc:
        # At start there is no snapshot to serve from: refuse, naming the store.
        reason = exc.args[0] if exc.args else exc
        raise ConfigError(f"cannot start: {reason} (waited {STORE_START_WAIT_S:g}s)") from None


def state_store(config: Config) -> tuple[StateStore, Election | None]:
    """The configured store, and with etcd the election of the promotion leader (else None)."""
    if not config.store:
        return SqliteStore(config.state_dir / STATE_DB), None
    etcd = etcd_store(config.store)
    election = Election(etcd.client, etcd.root + b"leader", ttl_s=config.leader_ttl_seconds)
    return etcd, election
