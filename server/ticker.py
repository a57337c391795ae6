"""Ticker: a named daemon thread that calls one function every N seconds until stopped.

The server's periodic background parts (the promotion controller, stable alerts, the model
poller, the SQLite store's watch, the fleet's repository reconciler and presence) share this
lifecycle: `start()` runs the thread; it waits `interval_s` (or until `nudge()`), calls
`tick()`, and again; an exception from `tick()` is logged with its traceback to the owner's
logger and the next tick comes as usual, so one bad round never ends the part. `stop(timeout)`
wakes the thread, which ends without another tick once the tick in progress (if any) returns,
and joins it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Tick", "Ticker"]

Tick: TypeAlias = Callable[[], object]


class Ticker:
    """Calls `tick` every `interval_s` seconds in a daemon thread named `name` (module doc)."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        tick: Tick,
        *,
        log: logging.Logger,
        failure: str,
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        """`failure` is the message logged (to `log`, with the traceback) when `tick` raises;
        `on_stop`, if given, is the thread's last call once stopped (e.g. closing what only
        its ticks use, which no other thread may close while a tick is in progress)."""
        self.name = name
        self.interval_s = interval_s
        self._tick = tick
        self._log = log
        self._failure = failure
        self._on_stop = on_stop
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"ticker {self.name} was started already")
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Tick now rather than at the end of the current interval."""
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, timeout: float) -> bool:
        """Stop ticking; wait up to `timeout` seconds for the thread to end. True when it has
        ended (or never started). Called from `tick` itself, it does not wait and returns
        False: the thread ends when that tick returns."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopped.is_set():
                if self._on_stop is not None:
                    try:
                        self._on_stop()
                    except Exception:
                        self._log.exception("%s: its last call failed", self.name)
                return
            try:
                self._tick()
            except Exception:  # one bad round must not end the part
                self._log.exception(self._failure)
