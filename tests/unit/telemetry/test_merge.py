"""Merging window summaries across replicas: sums bucket by bucket, associative and
commutative, the same summary as one processor that saw every call, freshness by age."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.telemetry.merge import (
    BucketCounts,
    ShadowCounts,
    from_raw,
    merge_buckets,
    merge_shadow,
    merge_traces,
    summarize,
)
from server.telemetry.windows import LATENCY_BOUNDS_MS
from server.testing import FakeClock
from tests.support.spans import feed, window_processor

SLOTS = len(LATENCY_BOUNDS_MS) + 1
counts = st.builds(
    lambda n_by_code, latency: BucketCounts(
        requests=sum(latency.values()),
        errors=n_by_code,
        by_code={"INTERNAL": n_by_code} if n_by_code else {},
        latency=latency,
    ),
    st.integers(0, 5),
    st.dictionaries(st.integers(0, SLOTS - 1), st.integers(1, 50), max_size=4),
)
buckets = st.dictionaries(st.sampled_from([float(s) for s in range(990, 1000)]), counts, max_size=6)
shadow = st.builds(ShadowCounts, *(st.integers(0, 100) for _ in range(7)))


@given(buckets, buckets)
def test_merging_is_commutative(a: dict[float, BucketCounts], b: dict[float, BucketCounts]) -> None:
    assert merge_buckets(a, b) == merge_buckets(b, a)


@given(buckets, buckets, buckets)
def test_merging_is_associative(
    a: dict[float, BucketCounts], b: dict[float, BucketCounts], c: dict[float, BucketCounts]
) -> None:
    assert merge_buckets(merge_buckets(a, b), c) == merge_buckets(a, merge_buckets(b, c))


@given(st.lists(buckets, max_size=4))
def test_merged_counts_are_the_sums(sources: list[dict[float, BucketCounts]]) -> None:
    merged: dict[float, BucketCounts] = {}
    for source in sources:
        merged = merge_buckets(merged, source)
    total = summarize(merged, bucket_s=1.0, now=1000.0, window_s=60)
    assert total.requests == sum(b.requests for s in sources for b in s.values())
    assert total.errors == sum(b.errors for s in sources for b in s.values())
    for start, bucket in merged.items():
        assert bucket.requests == sum(s[start].requests for s in sources if start in s)
        assert sum(bucket.latency.values()) == bucket.requests


@given(st.lists(shadow, max_size=4), st.lists(shadow, max_size=4))
def test_shadow_counters_merge_by_sum_in_any_order(
    a: list[ShadowCounts], b: list[ShadowCounts]
) -> None:
    assert merge_shadow(a + b) == merge_shadow(b + a) == merge_shadow(a) + merge_shadow(b)
    assert merge_shadow(a + b).completed == sum(s.completed for s in a + b)


def test_three_replicas_merge_to_what_one_processor_seeing_every_call_reports() -> None:
    clock = FakeClock(now=1_000.0)
    replicas = [window_processor(clock) for _ in range(3)]
    whole = window_processor(clock)
    for second in range(5):
        for i, windows in enumerate(replicas):
            for target in (windows, whole):
                feed(target, "m", "2", 10 + i, ms=1.0 + 7 * i + second)
                feed(target, "m", "2", i, code="INTERNAL", ms=40.0)
        clock.advance(1.0)
    merged: dict[float, BucketCounts] = {}
    for windows in replicas:
        merged = merge_buckets(merged, from_raw(windows.export("m", "2", 600)[0]))
    for window_s, since in [(60.0, 0.0), (2.5, 0.0), (60.0, 1_002.0)]:
        got = summarize(merged, bucket_s=1.0, now=clock(), window_s=window_s, since=since)
        want = whole.summary("m", "2", window_s=window_s, since=since)
        assert (got.requests, got.errors, got.p50_ms, got.p95_ms, got.p99_ms) == (
            want.requests,
            want.errors,
            want.p50_ms,
            want.p95_ms,
            want.p99_ms,
        )
        assert got.window_s == want.window_s
    assert merged[1_000.0].by_code == {"OK": 33, "INTERNAL": 3}


def test_error_traces_keep_the_latest_few_of_every_source() -> None:
    a = [(float(i), f"a{i}") for i in range(4)]
    b = [(i + 0.5, f"b{i}") for i in range(4)]
    assert merge_traces(a, b) == merge_traces(b, a)
    assert [t for _, t in merge_traces(a, b)] == ["b1", "a2", "b2", "a3", "b3"]
