"""Windows, evidence and decisions: validated on construction, JSON round trips, strict keys."""

from __future__ import annotations

import json

import pytest

from server.promotion.decision import Decision, Evidence, ShadowWindow, VersionWindow
from server.promotion.documents import InvalidPromotionInput
from server.promotion.gates import decide
from server.promotion.policy import Policy

POLICY = Policy()
STABLE = VersionWindow(5000, 0, p50_ms=5.0, p95_ms=8.0, p99_ms=10.0, window_s=60.0)


def test_windows_validate() -> None:
    """Windows refuse impossible counts and non-finite latencies."""
    with pytest.raises(ValueError, match="errors"):
        VersionWindow(5, 6)
    with pytest.raises(ValueError, match="p99_ms"):
        VersionWindow(5, 0, p99_ms=float("nan"))
    with pytest.raises(ValueError, match="disagreements"):
        ShadowWindow(5, 6, 0)


def test_decision_json_round_trip() -> None:
    """A decision survives JSON both ways and refuses unknown or missing keys."""
    candidate = VersionWindow(150, 8, 4.0, 7.0, 10.0, ("trace-a", "trace-b"), 60.0)
    ev = Evidence(
        "clf", "1", "2", 0, 60.0, STABLE, candidate,
        shadow=ShadowWindow(50, 1, 2, ("req-1",)),
        failed_checks=1,
    )  # fmt: skip
    d = decide(POLICY, ev)
    text = json.dumps(d.as_dict(), allow_nan=False)
    doc = json.loads(text)
    assert doc["action"] == "rollback" and doc["failed_checks"] == 2
    assert doc["evidence"]["candidate"]["error_trace_ids"] == ["trace-a", "trace-b"]
    assert doc["evidence"]["shadow"]["worst_request_ids"] == ["req-1"]
    assert {c["name"]: c["status"] for c in doc["checks"]}["error_rate"] == "fail"
    assert Decision.from_dict(doc) == d
    assert Decision.from_json(d.to_json()) == d
    with pytest.raises(InvalidPromotionInput, match="unknown Decision key 'extra'"):
        Decision.from_dict({**doc, "extra": 1})
    with pytest.raises(InvalidPromotionInput, match="missing the key 'requests'"):
        Evidence.from_dict({**doc["evidence"], "stable": {"errors": 0}})
