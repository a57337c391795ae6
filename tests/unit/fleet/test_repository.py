"""Which live replicas lack a version (the fleet repository's admission check, pure part)."""

from __future__ import annotations

from server.fleet.repository import missing_on


def test_a_replica_lacking_the_version_or_the_whole_model_is_named() -> None:
    readiness = {
        "a": {"classifier": ["1", "3"]},
        "b": {"classifier": ["1"]},
        "c": {"counter": ["1"]},  # no classifier at all
    }
    assert missing_on(readiness, "classifier", "3") == ["b", "c"]
    assert missing_on(readiness, "classifier", "1") == ["c"]
    assert missing_on({}, "classifier", "3") == []
