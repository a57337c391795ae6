"""One receiver: backoff schedule, what is retried, bounded queue, order, never blocking."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.webhooks import verify
from server.notify.delivery import Backoff, Receiver, retryable
from server.notify.events import Event
from server.notify.signing import SIGNATURE_HEADER
from server.testing import FakeClock
from tests.support.waiting import WAIT, wait_for


def event(n: int = 0) -> Event:
    return Event(type="rollout.stepped", model="m", severity="info", summary=f"e{n}", at=1.0)


class Script:
    """A fake transport answering from a script (an int is a status, an OSError is raised);
    records what was posted."""

    def __init__(self, *answers: int | OSError) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[bytes, dict[str, str], float]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.posts.append((body, dict(headers), timeout))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, OSError):
            raise answer
        return answer


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return False


def receiver(script: Script, **kwargs: object) -> tuple[Receiver, Sleeps]:
    sleeps = Sleeps()
    r = Receiver(
        "http://hooks.example:8080/x?token=abc",
        transport=script,
        sleep=sleeps,
        draw=lambda: 0.5,
        clock=FakeClock(1_700_000_000.0),
        **kwargs,  # type: ignore[arg-type]
    )
    return r, sleeps


@given(st.floats(0.01, 10), st.floats(10, 600), st.integers(0, 100), st.floats(0, 0.999))
def test_the_backoff_doubles_up_to_its_cap_and_jitters_within_its_upper_half(
    initial: float, maximum: float, attempt: int, draw: float
) -> None:
    b = Backoff(initial, maximum)
    ceiling = min(maximum, initial * 2.0**attempt)
    assert ceiling / 2 <= b.delay(attempt, draw) <= ceiling
    assert b.delay(attempt, draw) <= b.delay(attempt + 1, draw) or ceiling == maximum


def test_the_schedule_on_defaults_with_a_middle_draw() -> None:
    b = Backoff()
    assert [b.delay(n, 0.5) for n in range(8)] == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 45.0, 45.0]


@pytest.mark.parametrize(
    ("status", "again"),
    [(None, True), (500, True), (503, True), (429, True), (400, False), (404, False), (301, False)],
)
def test_what_is_retried(status: int | None, again: bool) -> None:
    assert retryable(status) is again


def test_connection_errors_5xx_and_429_are_retried_with_backoff_then_delivered() -> None:
    script = Script(ConnectionRefusedError("refused"), 503, 429, 200)
    r, sleeps = receiver(script, backoff=Backoff(1.0, 60.0))
    attempts = r.deliver(event())
    assert [a.status for a in attempts] == [None, 503, 429, 200]
    assert sleeps.delays == [0.75, 1.5, 3.0]
    assert (r.stats.delivered, r.stats.retries, r.stats.failed) == (1, 3, 0)


def test_a_4xx_is_not_retried_and_max_attempts_bounds_the_rest() -> None:
    r, sleeps = receiver(Script(400))
    assert [a.status for a in r.deliver(event())] == [400]
    assert sleeps.delays == [] and r.stats.failed == 1
    r, sleeps = receiver(Script(*[500] * 10), max_attempts=3)
    assert [a.status for a in r.deliver(event())] == [500, 500, 500]
    assert len(sleeps.delays) == 2 and (r.stats.failed, r.stats.retries) == (1, 2)


def test_each_attempt_is_signed_with_the_secret_and_carries_the_timeout() -> None:
    script = Script(500, 200)
    r, _ = receiver(script, secret="s3cret", timeout_s=2.5)
    r.deliver(event())
    for body, headers, timeout in script.posts:
        assert verify("s3cret", headers[SIGNATURE_HEADER], body, now=1_700_000_000.0)
        assert headers["X-Canaryserve-Event"] == "rollout.stepped"
        assert timeout == 2.5
    r, _ = receiver(script)
    r.deliver(event())
    assert SIGNATURE_HEADER not in script.posts[-1][1]  # no secret, no signature


def test_a_receiver_is_named_without_its_path_or_query() -> None:
    r, _ = receiver(Script())
    assert r.name == "http://hooks.example:8080"


def test_a_full_queue_drops_the_oldest_events_and_counts_them() -> None:
    r, _ = receiver(Script(), queue_size=3)
    for n in range(5):
        r.offer(event(n))  # no worker: nothing drains
    assert r.pending() == 3 and r.stats.dropped == 2
    r.start()
    assert r.force_flush(WAIT)
    r.shutdown()


def test_the_worker_delivers_in_order_and_a_failing_event_holds_the_later_ones() -> None:
    gate = threading.Event()
    seen: list[str] = []

    def transport(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        seen.append(body.decode())
        if len(seen) == 1:
            return 500  # the first event fails once: the second must wait for its retry
        return 200

    def sleep(seconds: float) -> bool:
        gate.wait(WAIT)
        return False

    r = Receiver("http://h", transport=transport, sleep=sleep, draw=lambda: 0.0)
    r.start()
    try:
        for n in range(3):
            r.offer(event(n))
        wait_for(lambda: len(seen) == 1)
        assert r.pending() == 2  # held behind the retry, in order
        gate.set()
        assert r.force_flush(WAIT)
        order = [s.split('"summary": "')[1][:2] for s in seen]
        assert order == ["e0", "e0", "e1", "e2"]
    finally:
        r.shutdown()


def test_offer_never_blocks_while_the_worker_is_stuck_in_a_post() -> None:
    release = threading.Event()

    def stuck(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        release.wait(WAIT)
        return 200

    r = Receiver("http://h", transport=stuck, queue_size=2)
    r.start()
    try:
        for n in range(50):
            r.offer(event(n))  # returns at once, however many
        assert r.stats.dropped >= 47
    finally:
        release.set()
        r.shutdown()
