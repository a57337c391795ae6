"""The join table on a fake clock: bounded by count (oldest first) and by age."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.outcomes.served import ServedRequests
from server.rollout.router import RouteReason, Stage
from server.testing import FakeClock


def table(max_entries: int = 3, ttl_s: float = 60.0) -> tuple[ServedRequests, FakeClock]:
    clock = FakeClock(now=100.0)
    return ServedRequests(max_entries, ttl_s, clock), clock


def put(t: ServedRequests, request_id: str, version: str = "2") -> None:
    t.record(request_id, "m", version, Stage.CANARY, RouteReason.HASH, True)


def test_a_recorded_request_is_found_with_who_served_it() -> None:
    t, clock = table()
    put(t, "r1", "3")
    served = t.lookup("r1")
    assert served is not None
    assert (served.model, served.version, served.stage, served.reason) == (
        "m",
        "3",
        Stage.CANARY,
        RouteReason.HASH,
    )
    assert served.at == clock.now and served.randomized
    assert t.lookup("r2") is None


def test_the_oldest_record_goes_first_when_full() -> None:
    t, clock = table(max_entries=3)
    for i in range(4):
        put(t, f"r{i}")
        clock.advance(1)
    assert t.lookup("r0") is None
    assert [t.lookup(f"r{i}") is not None for i in (1, 2, 3)] == [True, True, True]
    assert len(t) == 3 and t.evicted == 1


def test_a_reused_id_is_replaced_and_becomes_the_youngest() -> None:
    t, _ = table(max_entries=2)
    put(t, "a", "1")
    put(t, "b", "1")
    put(t, "a", "2")  # a again: now younger than b
    put(t, "c", "1")  # evicts b, not a
    assert t.lookup("b") is None
    served = t.lookup("a")
    assert served is not None and served.version == "2"


def test_records_expire_after_the_ttl() -> None:
    t, clock = table(ttl_s=60.0)
    put(t, "old")
    clock.advance(30)
    put(t, "young")
    clock.advance(30)
    assert t.lookup("old") is not None  # exactly 60 s: still kept
    clock.advance(0.001)
    assert t.lookup("old") is None
    assert t.lookup("young") is not None
    assert len(t) == 1  # the expired record was dropped on the way
    assert t.evicted == 0


def test_an_expired_record_pushed_out_is_not_counted_as_evicted() -> None:
    t, clock = table(max_entries=1, ttl_s=10.0)
    put(t, "a")
    clock.advance(11)
    put(t, "b")
    assert t.evicted == 0


@pytest.mark.parametrize(
    ("reason", "keyed", "randomized"),
    [
        (RouteReason.HASH, True, True),
        (RouteReason.NO_ROLLOUT, True, True),
        (RouteReason.NO_ROLLOUT, False, False),  # keyless callers may differ from keyed ones
        (RouteReason.COHORT, True, False),
        (RouteReason.PINNED, True, False),
        (RouteReason.NO_KEY, False, False),
        (RouteReason.CANDIDATE_OVERLOADED, True, False),
    ],
)
def test_only_random_assignments_gate(reason: RouteReason, keyed: bool, randomized: bool) -> None:
    t, _ = table()
    t.record("r", "m", "1", Stage.STABLE, reason, keyed)
    served = t.lookup("r")
    assert served is not None and served.randomized is randomized


@pytest.mark.parametrize(("size", "ttl"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_bounds_must_be_positive(size: int, ttl: float) -> None:
    with pytest.raises(ValueError):
        ServedRequests(size, ttl)


@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 20)), max_size=80), st.integers(1, 8))
def test_the_table_never_outgrows_its_bound_nor_answers_for_expired_ids(
    ops: list[tuple[int, float]], size: int
) -> None:
    t, clock = table(max_entries=size, ttl_s=15.0)
    recorded: dict[str, float] = {}
    for key, dt in ops:
        clock.advance(dt)
        put(t, f"r{key}")
        recorded[f"r{key}"] = clock.now
        assert len(t) <= size
    for request_id, at in recorded.items():
        served = t.lookup(request_id)
        if served is not None:
            assert clock.now - served.at <= 15.0 and served.at == at
