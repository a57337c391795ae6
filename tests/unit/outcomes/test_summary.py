"""Outcome windows merge across replicas: merging is associative and commutative, survives a
publication's round trip, and three replicas merged give what one recorder that saw every
report gives — the samples the gates compare and the counts `ab` shows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.outcomes.merged import MergedOutcomes
from server.outcomes.publication import ReplicaOutcomes, fresh, join, split
from server.outcomes.summary import OutcomeBucket, SeriesKey, merge_outcomes
from server.outcomes.windows import OutcomeWindows
from server.testing import FakeClock

START = 1_800_000_000.0

# Integer values: their float sums are exact in any order, so equality is exact (a real
# outcome's sums of arbitrary floats agree up to rounding, see server/outcomes/summary.py).
bucket = st.builds(
    lambda n, t, r: OutcomeBucket(n, float(t), float(t * t), r, float(t), float(t * t)),
    st.integers(0, 50),
    st.integers(-100, 100),
    st.integers(0, 50),
)
series = st.dictionaries(
    st.builds(
        SeriesKey, st.sampled_from(["1", "2"]), st.sampled_from(["c", "r"]), st.just("binary")
    ),
    st.dictionaries(st.sampled_from([START + 60 * i for i in range(5)]), bucket, max_size=5),
    max_size=4,
)


@given(series, series, series)
def test_merging_is_associative(a: dict, b: dict, c: dict) -> None:  # type: ignore[type-arg]
    assert merge_outcomes(merge_outcomes(a, b), c) == merge_outcomes(a, merge_outcomes(b, c))


@given(series, series)
def test_merging_is_commutative(a: dict, b: dict) -> None:  # type: ignore[type-arg]
    assert merge_outcomes(a, b) == merge_outcomes(b, a)


#: One report: seconds after START, replica, version, outcome, value, randomized.
report = st.tuples(
    st.floats(0, 3 * 3600, allow_nan=False),
    st.integers(0, 2),
    st.sampled_from(["1", "2"]),
    st.sampled_from(["conversion", "revenue"]),
    st.integers(0, 20),
    st.booleans(),
)


def record(
    reports: list[tuple[float, int, str, str, int, bool]],
) -> tuple[list[OutcomeWindows], OutcomeWindows, FakeClock]:
    clock = FakeClock(now=START)
    replicas = [OutcomeWindows(clock=clock) for _ in range(3)]
    everything = OutcomeWindows(clock=clock)
    for at, replica, version, name, value, randomized in sorted(reports):
        clock.now = START + at
        kind = "binary" if name == "conversion" else "real"
        v = float(value % 2) if kind == "binary" else float(value)
        for windows in (replicas[replica], everything):
            windows.claim("m", name, kind, 32)
            windows.add("m", version, name, v, randomized)
    clock.now = START + 3 * 3600 + 1
    return replicas, everything, clock


@given(st.lists(report, max_size=60))
def test_three_replicas_merged_equal_one_recorder_that_saw_every_report(
    reports: list[tuple[float, int, str, str, int, bool]],
) -> None:
    replicas, everything, clock = record(reports)
    # What replica 0 reads: its own windows plus the others' publications, through etcd's
    # form (split into pieces and joined back).
    published = [
        join(split(ReplicaOutcomes(f"r{i}", clock.now, w.bucket_s, w.export("m"))))
        for i, w in enumerate(replicas)
    ]
    others = [p for p in published if p is not None and p.replica != "r0"]
    view = MergedOutcomes(replicas[0], lambda model: others, "r0", clock)
    assert view.merged("m") == everything.export("m")
    assert view.names("m") == everything.names("m")
    assert view.replicas("m") == ("r0", "r1", "r2")
    for name in everything.names("m"):
        assert view.kind("m", name) == everything.kind("m", name)
        assert view.versions("m", name) == everything.versions("m", name)
        for version in ("1", "2"):
            for window_s in (60.0, 3600.0, 86_400.0):
                assert view.series("m", version, name, window_s) == everything.series(
                    "m", version, name, window_s
                )


def test_a_publication_round_trips_through_its_pieces() -> None:
    key = SeriesKey("2", "revenue", "real")
    buckets = {
        START + 60 * i: OutcomeBucket(i, 0.1 * i, 0.01 * i, i, 0.1, 1e-300) for i in range(25)
    }
    p = ReplicaOutcomes("r1", START + 1500.5, 60.0, {key: buckets})
    pieces = split(p)
    assert sorted(pieces) == ["head", "s1800000000", "s1800000600", "s1800001200"]
    assert join(pieces) == p
    assert join({k: v for k, v in pieces.items() if k != "head"}) is None


def test_a_stale_or_mismatched_publication_is_left_out() -> None:
    clock = FakeClock(now=START)
    mine = OutcomeWindows(clock=clock)
    mine.claim("m", "c", "binary", 32)
    mine.add("m", "1", "c", 1.0, True)
    key = SeriesKey("1", "c", "binary")
    other = ReplicaOutcomes(
        "r1", START, 60.0, {key: {START - START % 60: OutcomeBucket(5, 5, 5, 5, 5, 5)}}
    )
    odd = ReplicaOutcomes(
        "r2", START, 30.0, {key: {START - START % 30: OutcomeBucket(7, 7, 7, 7, 7, 7)}}
    )
    assert fresh([other], START + 6, 5.0) == []
    view = MergedOutcomes(mine, lambda model: [other, odd], "r0", clock)
    assert view.series("m", "1", "c", 3600).randomized.n == 6  # r2's buckets do not line up
    assert view.replicas("m") == ("r0", "r1")
