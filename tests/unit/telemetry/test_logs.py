"""Structured logs: one JSON object per line; a failing candidate cannot flood the log."""

from __future__ import annotations

import io
import json
import logging

import pytest

from server.errors import ModelFailed, Overloaded
from server.telemetry.logs import CallFailures, JsonFormatter, configure_logging
from server.testing import FakeClock


def test_a_record_is_one_json_line_with_its_fields_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.__dict__.update(model="m", version="2", request_id="r1", trace_id="ab" * 16)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert (doc["level"], doc["logger"], doc["message"]) == ("WARNING", "x", "a b")
    assert (doc["model"], doc["version"], doc["request_id"], doc["trace_id"]) == (
        "m",
        "2",
        "r1",
        "ab" * 16,
    )
    assert "ValueError: boom" in doc["exception"]


def test_auto_is_json_off_a_terminal_and_text_on_one() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        assert configure_logging("info", "auto", io.StringIO()) == "json"
        assert configure_logging("info", "auto", Tty()) == "text"
        assert configure_logging("info", "json", Tty()) == "json"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_failed_calls_are_logged_up_to_the_rate_then_summed_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(100.0)
    failures = CallFailures(per_second=3, clock=clock)
    error = ModelFailed("m", "2", RuntimeError("kernel died"))
    with caplog.at_level(logging.WARNING, logger="canaryserve.calls"):
        logged = [failures.record("m", "2", "canary", f"r{n}", "t", error) for n in range(10)]
        assert logged == [True] * 3 + [False] * 7
        assert failures.record("m", "3", "canary", "other", "t", error)  # per version
        clock.advance(1.0)
        assert failures.record("m", "2", "canary", "r10", "t", Overloaded("full"))
    lines = [r for r in caplog.records if r.name == "canaryserve.calls"]
    assert len(lines) == 3 + 1 + 1 + 1  # 3 calls, other version, the summary, the next call
    first = lines[0]
    assert (first.__dict__["request_id"], first.__dict__["code"]) == ("r0", "INTERNAL")
    assert first.exc_info is not None  # INTERNAL: with the exception
    summary = lines[4]
    assert summary.__dict__["suppressed"] == 7 and "7 more failed call(s)" in summary.message
    assert lines[5].exc_info is None  # not INTERNAL: no traceback


def test_flush_writes_the_summary_still_owed(caplog: pytest.LogCaptureFixture) -> None:
    failures = CallFailures(per_second=1, clock=FakeClock(5.0))
    error = ModelFailed("m", "2", RuntimeError("x"))
    with caplog.at_level(logging.WARNING, logger="canaryserve.calls"):
        for _ in range(4):
            failures.record("m", "2", "canary", "", "", error)
        failures.flush()
    assert caplog.records[-1].__dict__["suppressed"] == 3
