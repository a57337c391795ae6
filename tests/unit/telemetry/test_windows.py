"""Rolling windows per (model, version): buckets on a fake clock, errors, percentiles, totals."""

from __future__ import annotations

import bisect
import itertools

import pytest

from server.telemetry.windows import LATENCY_BOUNDS_MS
from server.testing import FakeClock
from tests.support.spans import feed, inference_span, window_processor


def test_each_span_lands_in_the_window_of_the_version_that_served_it() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock)
    feed(windows, "m", "1", 3)
    feed(windows, "m", "2", 2)
    feed(windows, "other", "1", 1)
    assert windows.summary("m", "1", window_s=60).requests == 3
    assert windows.summary("m", "2", window_s=60).requests == 2
    assert windows.summary("other", "1", window_s=60).requests == 1


def test_every_code_but_ok_and_cancelled_is_an_error_with_its_trace_id() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock)
    for code, trace_id in [("OK", 1), ("CANCELLED", 2), ("INTERNAL", 3), ("UNAVAILABLE", 4)]:
        windows.on_end(inference_span("m", "1", code=code, trace_id=trace_id))
    summary = windows.summary("m", "1", window_s=60)
    assert (summary.requests, summary.errors) == (4, 2)
    assert summary.error_trace_ids == (format(3, "032x"), format(4, "032x"))


def test_buckets_older_than_the_window_are_left_out() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock, bucket_s=1.0)
    feed(windows, "m", "1", 5, code="INTERNAL")
    clock.advance(30.0)
    feed(windows, "m", "1", 2)
    recent = windows.summary("m", "1", window_s=10)
    assert (recent.requests, recent.errors, recent.error_trace_ids) == (2, 0, ())
    assert recent.window_s == 10
    both = windows.summary("m", "1", window_s=60)
    assert (both.requests, both.errors, len(both.error_trace_ids)) == (7, 5, 5)


def test_buckets_past_the_ring_expire_whatever_the_window() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock, bucket_s=1.0, buckets=3)
    for n in (1, 2, 4, 8):  # one bucket per second; the ring keeps the last three
        feed(windows, "m", "1", n)
        clock.advance(1.0)
    assert windows.summary("m", "1", window_s=3_600).requests == 2 + 4 + 8


def test_a_bucket_counts_while_any_part_of_it_is_inside_the_window() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock, bucket_s=10.0)
    feed(windows, "m", "1", 1)  # bucket [1000, 1010)
    clock.now = 1_015.0
    assert windows.summary("m", "1", window_s=14.9).requests == 1  # from 1000.1: overlaps it
    assert windows.summary("m", "1", window_s=5.0).requests == 0  # from 1010: after it ended


def test_since_leaves_out_what_came_before_a_step_started() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock)
    feed(windows, "m", "1", 4, code="INTERNAL")
    clock.advance(5.0)
    feed(windows, "m", "1", 3)
    clock.advance(5.0)
    step = windows.summary("m", "1", window_s=600, since=1_005.0)
    assert (step.requests, step.errors, step.error_trace_ids) == (3, 0, ())
    assert step.window_s == 5.0  # the summary covers only the time since the step began


def test_only_the_last_five_error_traces_are_kept() -> None:
    clock = FakeClock(now=1_000.0)
    windows = window_processor(clock)
    for trace_id in range(1, 9):
        windows.on_end(inference_span("m", "1", code="INTERNAL", trace_id=trace_id))
    summary = windows.summary("m", "1", window_s=60)
    assert summary.errors == 8
    assert summary.error_trace_ids == tuple(format(t, "032x") for t in range(4, 9))


def test_a_version_without_calls_has_no_percentiles() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    summary = windows.summary("m", "never", window_s=60)
    assert (summary.requests, summary.errors, summary.error_trace_ids) == (0, 0, ())
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == (None, None, None)


def test_a_percentile_interpolates_inside_the_bucket_that_holds_its_rank() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    feed(windows, "m", "1", 100, ms=10.0)  # all in one histogram bucket
    slot = bisect.bisect_left(LATENCY_BOUNDS_MS, 10.0)
    low, high = LATENCY_BOUNDS_MS[slot - 1], LATENCY_BOUNDS_MS[slot]
    assert low < 10.0 <= high
    summary = windows.summary("m", "1", window_s=60)
    assert summary.p50_ms == pytest.approx(low + (high - low) * 0.50)
    assert summary.p95_ms == pytest.approx(low + (high - low) * 0.95)
    assert summary.p99_ms == pytest.approx(low + (high - low) * 0.99)


def test_percentiles_follow_the_latencies_within_a_bucket_width() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    for ms in range(1, 101):
        windows.on_end(inference_span("m", "1", ms=float(ms)))
    summary = windows.summary("m", "1", window_s=60)
    assert summary.p50_ms is not None and summary.p95_ms is not None
    assert summary.p99_ms is not None
    assert summary.p50_ms < summary.p95_ms < summary.p99_ms
    for got, want in [(summary.p50_ms, 50.0), (summary.p95_ms, 95.0), (summary.p99_ms, 99.0)]:
        assert want / 1.1 <= got <= want * 1.1  # buckets are 10 % apart


def test_latencies_past_the_last_bound_report_the_last_bound() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    feed(windows, "m", "1", 3, ms=120_000.0)
    assert windows.summary("m", "1", window_s=60).p99_ms == LATENCY_BOUNDS_MS[-1]


def test_latency_bounds_are_ten_percent_apart_up_to_a_minute() -> None:
    ratios = [b / a for a, b in itertools.pairwise(LATENCY_BOUNDS_MS)]
    assert all(1.09 < r < 1.11 for r in ratios)
    assert LATENCY_BOUNDS_MS[0] == 0.05 and 50_000 < LATENCY_BOUNDS_MS[-1] <= 60_000


def test_sampling_weights_scale_the_totals_and_not_the_window() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    feed(windows, "m", "1", 2, ms=4.0, weight=50.0)  # stable spans sampled at 2 %
    feed(windows, "m", "2", 1, ms=2.0, code="INTERNAL")  # a candidate span: weight 1
    assert windows.summary("m", "1", window_s=60).requests == 2
    totals = windows.totals()
    stable, candidate = totals[("m", "1")], totals[("m", "2")]
    assert (stable.requests, stable.by_code) == (100.0, {"OK": 100.0})
    assert stable.latency_sum_s == pytest.approx(100 * 0.004)
    assert sum(stable.latency) == 100.0
    assert (candidate.requests, candidate.by_code) == (1.0, {"INTERNAL": 1.0})


def test_totals_are_a_copy() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    feed(windows, "m", "1", 1)
    totals = windows.totals()
    totals[("m", "1")].by_code["OK"] = 99.0
    totals[("m", "1")].latency[0] = 99.0
    assert windows.totals()[("m", "1")].by_code == {"OK": 1.0}
    assert windows.totals()[("m", "1")].latency[0] == 0.0


def test_spans_of_unrouted_calls_or_without_times_are_ignored() -> None:
    windows = window_processor(FakeClock(now=1_000.0))
    windows.on_end(inference_span(None, None, code="NOT_FOUND"))  # failed before routing
    windows.on_end(inference_span("m", None))
    windows.on_end(inference_span("m", "1", ms=None))  # never ended
    assert windows.totals() == {}
    assert windows.summary("m", "1", window_s=60).requests == 0


def test_a_since_still_ahead_gives_an_empty_window_not_a_negative_one() -> None:
    # After a step-down the controller's evidence starts at the next whole bucket, which may
    # lie a moment ahead: that is an empty window of length 0 (VersionWindow refuses < 0).
    clock = FakeClock(now=1_000.5)
    windows = window_processor(clock)
    feed(windows, "m", "1", 3)
    ahead = windows.summary("m", "1", window_s=600, since=1_001.0)
    assert (ahead.requests, ahead.window_s) == (0, 0.0)
