"""A replica's published telemetry: cut into a head and slots of buckets, put back together
unchanged; finished slots stay byte-identical round after round; stale ones are dropped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.telemetry.merge import BucketCounts, ShadowCounts, from_raw
from server.telemetry.publication import HEAD, ReplicaTelemetry, fresh, join, slot_of, split
from server.testing import FakeClock
from tests.support.spans import feed, window_processor

buckets = st.dictionaries(
    st.integers(900, 1_000).map(float),
    st.builds(
        BucketCounts,
        st.integers(0, 9),
        st.integers(0, 9),
        st.dictionaries(st.sampled_from(["OK", "INTERNAL"]), st.integers(1, 9)),
        st.dictionaries(st.integers(0, 150), st.integers(1, 9)),
    ),
    max_size=30,
)


def publication(versions: dict[str, dict[float, BucketCounts]], at: float) -> ReplicaTelemetry:
    return ReplicaTelemetry(
        replica="host:1:abc",
        published_at=at,
        bucket_s=1.0,
        span_start=900.0,
        versions={v: b for v, b in versions.items() if b},
        traces={"2": ((999.5, "ab" * 16),)},
        shadow={"2": ShadowCounts(5, 4, 1, 4, 0, 0, 1)},
    )


@given(st.dictionaries(st.sampled_from(["1", "2"]), buckets))
def test_the_pieces_join_back_into_the_publication(
    versions: dict[str, dict[float, BucketCounts]],
) -> None:
    p = publication(versions, 1_000.5)
    assert join(split(p)) == p


def test_a_real_window_round_trips_and_old_slots_do_not_change_between_rounds() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock)
    first: dict[str, str] = {}
    for _ in range(25):
        feed(windows, "m", "2", 3, ms=2.0)
        feed(windows, "m", "2", 1, code="INTERNAL")
        raw, _ = windows.export("m", "2", 600)
        pieces = split(publication({"2": from_raw(raw)}, clock()))
        joined = join(pieces)
        assert joined is not None and joined.versions["2"] == from_raw(raw)
        for name, text in first.items():
            if name not in (HEAD, f"s{slot_of(clock())}"):  # the head and the current slot
                assert pieces[name] == text
        first = pieces
        clock.advance(1.0)
    assert sorted(first) == [HEAD, "s1000", "s1010", "s1020"]


def test_without_its_head_a_publication_is_not_read() -> None:
    pieces = split(publication({"2": {1_000.0: BucketCounts(1, 0, {"OK": 1}, {3: 1})}}, 1_000.5))
    del pieces[HEAD]
    assert join(pieces) is None


def test_stale_publications_are_dropped_and_each_replica_counts_once() -> None:
    def pub(replica: str, at: float) -> ReplicaTelemetry:
        return ReplicaTelemetry(replica=replica, published_at=at, bucket_s=1.0, span_start=at)

    kept = fresh([pub("a", 99.0), pub("a", 100.0), pub("b", 94.0), pub("c", 96.0)], 100.0, 5.0)
    assert [(p.replica, p.published_at) for p in kept] == [("a", 100.0), ("c", 96.0)]
