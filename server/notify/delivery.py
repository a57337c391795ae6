"""One webhook receiver: a bounded queue drained in order by its own thread, with retries.

Side branch rules (like OpenTelemetry's BatchSpanProcessor): `offer` never blocks and never
raises; when the queue is full the oldest event is dropped and counted. The worker posts one
event at a time, so a receiver gets its events in order; an event that fails with a
connection error, a timeout, 5xx or 429 is retried after an exponential backoff with jitter
(other statuses are the receiver's refusal: counted, logged, not retried), up to
`max_attempts`, and then given up (counted and logged) so later events still flow.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.clock import Clock
from server.notify.events import Event
from server.notify.signing import SIGNATURE_HEADER, signature_header
from server.notify.transport import Transport, display_url, post

__all__ = ["Attempt", "Backoff", "Receiver", "ReceiverStats", "retryable"]

log = logging.getLogger(__name__)

USER_AGENT = "canaryserve-notify/1"


def retryable(status: int | None) -> bool:
    """Whether a failed attempt is worth repeating: no answer (None), 5xx, or 429."""
    return status is None or status >= 500 or status == 429


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: attempt n (0-based) waits between half and all
    of min(maximum, initial * 2**n) seconds, so a fleet of retries spreads out."""

    initial_s: float = 1.0
    maximum_s: float = 60.0

    def delay(self, attempt: int, draw: float) -> float:
        """The wait after failed attempt `attempt`, for a uniform `draw` in [0, 1)."""
        ceiling = min(self.maximum_s, self.initial_s * 2.0 ** min(attempt, 62))
        return ceiling / 2 + draw * ceiling / 2


@dataclass(frozen=True)
class Attempt:
    """What one POST of an event got: a status, or the error instead of one."""

    status: int | None
    error: str
    seconds: float

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        return (
            f"answered {self.status}" if self.status is not None else f"unreachable: {self.error}"
        )


@dataclass
class ReceiverStats:
    """Counters of one receiver since start (for /metrics)."""

    delivered: int = 0
    failed: int = 0  # given up after retries, or refused with a 4xx
    retries: int = 0
    dropped: int = 0  # the queue was full: the oldest event went


#: Waits `seconds` unless stopped first; True when stopped (threading.Event.wait's meaning).
Sleep = Callable[[float], bool]


class Receiver:
    """One configured webhook."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "",
        secret: str | None = None,
        timeout_s: float = 5.0,
        queue_size: int = 256,
        max_attempts: int = 6,
        backoff: Backoff = Backoff(),
        transport: Transport = post,
        clock: Clock = time.time,
        draw: Callable[[], float] = random.random,
        sleep: Sleep | None = None,
    ) -> None:
        self.url = url
        self.name = name or display_url(url)
        self._secret = secret
        self._timeout = timeout_s
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._transport = transport
        self._clock = clock
        self._draw = draw
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._queue: collections.deque[Event] = collections.deque(maxlen=queue_size)
        self._cond = threading.Condition()
        self._busy = False
        self.stats = ReceiverStats()
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"canaryserve-notify-{self.name}", daemon=True
        )
        self._thread.start()

    def force_flush(self, timeout: float) -> bool:
        """Wait until every queued event was delivered or given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Give queued events up to `timeout` seconds, then stop (a retry wait ends at once)."""
        if self._thread is not None:
            self.force_flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the queue --

    def offer(self, event: Event) -> None:
        """Queue `event`; never blocks. A full queue drops its oldest event (counted)."""
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.stats.dropped += 1
                dropped = self.stats.dropped
            else:
                dropped = 0
            self._queue.append(event)
            self._cond.notify_all()
        if dropped == 1 or (dropped and dropped % 100 == 0):
            log.warning(
                "notifications to %s: queue full, dropped the oldest event (%d dropped so far;"
                " canaryserve_notifications_dropped_total)",
                self.name,
                dropped,
            )

    def pending(self) -> int:
        return len(self._queue)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop.is_set())
                if self._stop.is_set():
                    return
                event = self._queue.popleft()
                self._busy = True
            try:
                self.deliver(event)
            except Exception:  # the worker must outlive any one event
                log.exception("notification %s to %s failed", event.id, self.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # -- sending --

    def attempt(self, event: Event) -> Attempt:
        """One signed POST of `event`."""
        body = event.body()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Canaryserve-Event": event.type,
            "X-Canaryserve-Event-Id": event.id,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature_header(self._secret, int(self._clock()), body)
        started = time.perf_counter()
        try:
            status: int | None = self._transport(self.url, body, headers, self._timeout)
            error = ""
        except OSError as exc:
            status, error = None, str(exc) or type(exc).__name__
        return Attempt(status, error, time.perf_counter() - started)

    def deliver(self, event: Event) -> list[Attempt]:
        """POST `event` until it is delivered, refused, given up, or the receiver stops."""
        attempts: list[Attempt] = []
        for n in range(self._max_attempts):
            result = self.attempt(event)
            attempts.append(result)
            if result.delivered:
                self.stats.delivered += 1
                return attempts
            if not retryable(result.status) or n + 1 == self._max_attempts:
                break
            self.stats.retries += 1
            if self._sleep(self._backoff.delay(n, self._draw())):
                break  # stopping
        self.stats.failed += 1
        log.warning(
            "notification %s (%s of model %s) to %s not delivered after %d attempt(s): %s",
            event.id,
            event.type,
            event.model,
            self.name,
            len(attempts),
            attempts[-1].describe(),
        )
        return attempts
