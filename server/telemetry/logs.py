"""Logs an operator can use: one JSON object per line, and failed candidate calls, rate-limited.

`JsonFormatter` writes every record as one JSON line: time, level, logger, message, the
exception's traceback when there is one, and the structured fields a record carries
(`extra={"model": ..., "version": ..., "request_id": ..., "trace_id": ...}`).
`CallFailures` logs a candidate's failed calls at WARNING — with the traceback for INTERNAL
ones — at most `per_second` per version per second; past that it counts them and writes one
summary line with the count when the next second's first failure comes (or at shutdown).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
import time
from typing import IO, Any

from server.clock import Clock
from server.errors import status_name

__all__ = ["FIELDS", "LOG_FORMATS", "CallFailures", "JsonFormatter", "configure_logging"]

#: The structured fields a record may carry, written under these names when present.
FIELDS = (
    "event",
    "event_id",
    "model",
    "version",
    "stage",
    "request_id",
    "trace_id",
    "trace_ids",
    "code",
    "actor",
    "suppressed",
)
LOG_FORMATS = ("auto", "json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value not in (None, "", [], ()):
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(level: str, fmt: str = "auto", stream: IO[str] | None = None) -> str:
    """Set up the root logger; `auto` is JSON when the stream is not a terminal (a file, a
    container's log collector) and text for a person at one. Returns the format chosen."""
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return fmt


class CallFailures:
    """Rate-limited WARNING lines for failed candidate calls."""

    def __init__(
        self,
        per_second: int = 5,
        clock: Clock = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self._per_second = per_second
        self._clock = clock
        self._log = logger or logging.getLogger("canaryserve.calls")
        self._lock = threading.Lock()
        #: (model, version) -> [second, logged in it, suppressed in it]
        self._seconds: dict[tuple[str, str], list[int]] = {}

    def record(
        self,
        model: str,
        version: str,
        stage: str,
        request_id: str,
        trace_id: str,
        exc: BaseException,
    ) -> bool:
        """Log one failed call (True) or count it as suppressed (False)."""
        now = int(self._clock())
        with self._lock:
            slot = self._seconds.setdefault((model, version), [now, 0, 0])
            summary = 0
            if slot[0] != now:
                summary, slot[:] = slot[2], [now, 0, 0]
            logged = slot[1] < self._per_second
            if logged:
                slot[1] += 1
            else:
                slot[2] += 1
        if summary:
            self._summary(model, version, summary)
        if not logged:
            return False
        code = status_name(exc)
        self._log.warning(
            "model %s version %s (%s) failed a call with %s: %s",
            model,
            version,
            stage,
            code,
            exc,
            exc_info=exc if code == "INTERNAL" else None,
            extra={
                "model": model,
                "version": version,
                "stage": stage,
                "request_id": request_id,
                "trace_id": trace_id,
                "code": code,
            },
        )
        return True

    def flush(self) -> None:
        """Write the summary lines still owed (at shutdown)."""
        with self._lock:
            owed = [(key, slot[2]) for key, slot in self._seconds.items() if slot[2]]
            self._seconds.clear()
        for (model, version), count in owed:
            self._summary(model, version, count)

    def _summary(self, model: str, version: str, count: int) -> None:
        self._log.warning(
            "model %s version %s: %d more failed call(s) in one second not logged one by one"
            " (at most %d per second)",
            model,
            version,
            count,
            self._per_second,
            extra={"model": model, "version": version, "suppressed": count},
        )
