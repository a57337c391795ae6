"""The state store a server starts on: SQLite by default; a wrong etcd URL is a config error."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.assembly.stores import STATE_DB, state_store
from server.config import Config, ConfigError
from server.rollout.store import SqliteStore


def test_by_default_the_store_is_sqlite_in_the_state_dir_and_nobody_is_elected(
    tmp_path: Path,
) -> None:
    store, election = state_store(Config(models_dir=tmp_path, state_dir=tmp_path))
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / STATE_DB).exists()
        assert election is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://", "must look like"),
        ("etcd://127.0.0.1/prefix", "must be HOST:PORT"),
        ("etcd://127.0.0.1:99999/prefix", "must be HOST:PORT"),
    ],
)
def test_a_malformed_etcd_url_names_the_store_key(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"'store': .*{message}"):
        state_store(Config(models_dir=tmp_path, state_dir=tmp_path, store=url))
