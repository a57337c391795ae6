"""The ticker: a named daemon thread calling one function every N seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from server.ticker import Ticker
from tests.support.waiting import WAIT, wait_for

LOG = logging.getLogger("tests.ticker")


class Calls:
    """Records each tick (and the thread it ran in); raises or blocks when told to."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.fail = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(WAIT)
        if self.fail:
            raise RuntimeError("a bad round")


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def tickers() -> Iterator[list[Ticker]]:
    made: list[Ticker] = []
    yield made
    for ticker in made:
        ticker.stop(WAIT)


def ticker(made: list[Ticker], calls: Calls, interval_s: float) -> Ticker:
    t = Ticker("test-ticker", interval_s, calls, log=LOG, failure="the test tick failed")
    made.append(t)
    return t


def test_ticks_repeatedly_in_a_daemon_thread_of_its_name(
    calls: Calls, tickers: list[Ticker]
) -> None:
    t = ticker(tickers, calls, 0.01)
    t.start()
    wait_for(lambda: len(calls.threads) >= 3, message="three ticks")
    assert set(calls.threads) == {"test-ticker"}
    (thread,) = [th for th in threading.enumerate() if th.name == "test-ticker"]
    assert thread.daemon


def test_a_failing_tick_is_logged_and_the_next_tick_comes(
    calls: Calls, tickers: list[Ticker], caplog: pytest.LogCaptureFixture
) -> None:
    calls.fail = True
    t = ticker(tickers, calls, 0.01)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        t.start()
        wait_for(lambda: len(calls.threads) >= 2, message="a tick after the failure")
        assert t.stop(WAIT)
    failures = [r for r in caplog.records if r.name == LOG.name]
    assert failures and all(r.getMessage() == "the test tick failed" for r in failures)
    assert failures[0].exc_info is not None  # the traceback goes to the log
    assert "a bad round" in caplog.text


def test_stop_before_the_first_interval_never_ticks(calls: Calls, tickers: list[Ticker]) -> None:
    """The first tick comes after one interval; stop wakes the thread, which ends untouched."""
    t = ticker(tickers, calls, 60.0)
    t.start()
    assert t.stop(WAIT)
    assert calls.threads == []
    assert t.stopped


def test_nudge_ticks_before_the_interval_ends(calls: Calls, tickers: list[Ticker]) -> None:
    t = ticker(tickers, calls, 60.0)
    t.start()
    t.nudge()
    wait_for(lambda: calls.threads, message="a nudged tick")
    assert t.stop(WAIT)
    assert len(calls.threads) == 1


def test_stop_waits_for_the_tick_in_progress_and_no_tick_follows(
    calls: Calls, tickers: list[Ticker]
) -> None:
    calls.gate = threading.Event()
    t = ticker(tickers, calls, 0.01)
    t.start()
    assert calls.entered.wait(WAIT)
    assert not t.stop(0.01)  # the tick holds the thread: not ended yet
    calls.gate.set()
    assert t.stop(WAIT)
    assert len(calls.threads) == 1
    assert not any(th.name == "test-ticker" for th in threading.enumerate())


def test_stop_from_the_tick_itself_ends_the_thread(tickers: list[Ticker]) -> None:
    ticks: list[int] = []
    holder: list[Ticker] = []

    def tick() -> None:
        ticks.append(1)
        holder[0].stop(WAIT)  # must not wait for its own thread

    t = Ticker("test-ticker", 0.01, tick, log=LOG, failure="the test tick failed")
    tickers.append(t)
    holder.append(t)
    t.start()
    wait_for(lambda: not any(th.name == "test-ticker" for th in threading.enumerate()))
    assert ticks == [1]


def test_stop_without_start_and_a_second_start(calls: Calls, tickers: list[Ticker]) -> None:
    t = ticker(tickers, calls, 0.01)
    assert t.stop(WAIT)  # never started: nothing to wait for
    other = ticker(tickers, calls, 60.0)
    other.start()
    with pytest.raises(RuntimeError, match="started already"):
        other.start()


def test_on_stop_is_the_threads_last_call_after_the_tick_in_progress(calls: Calls) -> None:
    """What only the ticks use is closed by the thread itself, even when stop() gave up
    waiting for a long tick: never under a tick still running."""
    calls.gate = threading.Event()
    order: list[str] = []
    last = threading.current_thread
    t = Ticker(
        "test-ticker", 0.01, lambda: (order.append("tick"), calls()), log=LOG,
        failure="the test tick failed", on_stop=lambda: order.append(last().name),
    )  # fmt: skip
    t.start()
    assert calls.entered.wait(WAIT)
    assert not t.stop(0.01)  # stop gave up waiting: the tick is still running
    assert order == ["tick"]  # and nothing was closed under it
    calls.gate.set()
    wait_for(lambda: len(order) == 2, message="on_stop after the tick")
    assert order == ["tick", "test-ticker"]
