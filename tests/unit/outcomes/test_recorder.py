"""Outcome reports joined to versions (by request id, by routing key), counted in the rolling
windows, refused with the right error; and the A/B view over them."""

from __future__ import annotations

import pytest

from server.errors import FailedPrecondition, InvalidInput, ModelNotFound, NotFound, Overloaded
from server.outcomes.ab import compare
from server.outcomes.recorder import (
    JOIN_REQUEST_ID,
    JOIN_ROUTING_KEY,
    OutcomeRecorder,
    OutcomeReport,
)
from server.outcomes.served import ServedRequests
from server.outcomes.windows import OutcomeWindows
from server.rollout.router import (
    CandidateRouting,
    ModelRouting,
    RouteReason,
    RoutingTable,
    Stage,
    route,
)
from server.testing import FakeClock


def routing(weight_ppm: int = 500_000) -> RoutingTable:
    rollout = CandidateRouting(candidate="3", canary_ppm=weight_ppm, shadow_ppm=0, salt="s")
    return RoutingTable(
        {"m": ModelRouting("2", rollout, frozenset({"1", "2", "3"}))}, allow_pinning=True
    )


class Rig:
    def __init__(self, max_names: int = 32) -> None:
        self.clock = FakeClock(now=10_000.0)
        self.table = routing()
        self.served = ServedRequests(100, 60.0, self.clock)
        self.windows = OutcomeWindows(clock=self.clock)
        self.recorder = OutcomeRecorder(
            self.served, self.windows, lambda: self.table, max_names=max_names
        )

    def serve(self, request_id: str, key: str | None, pinned: str | None = None) -> str:
        """Route a request as the data plane does and record who served it."""
        chosen = route(self.table, "m", key, {}, pinned)
        self.served.record(request_id, "m", chosen.version, chosen.stage, chosen.reason, bool(key))
        return chosen.version


@pytest.fixture
def rig() -> Rig:
    return Rig()


def report(name: str = "conversion", value: float = 1.0, **ids: str) -> OutcomeReport:
    kind = "real" if name.startswith("revenue") else "binary"
    return OutcomeReport("m", name, kind, value, ids.get("request_id", ""), ids.get("key", ""))


def test_a_report_by_request_id_counts_for_the_version_that_served_it(rig: Rig) -> None:
    versions = {f"r{i}": rig.serve(f"r{i}", f"user-{i}") for i in range(40)}
    assert set(versions.values()) == {"2", "3"}  # a 50 % split hashes both ways
    for request_id, version in versions.items():
        a = rig.recorder.report(report(request_id=request_id))
        assert (a.version, a.joined_by, a.randomized) == (version, JOIN_REQUEST_ID, True)
        assert a.stage is (Stage.STABLE if version == "2" else Stage.CANARY)
    for version in ("2", "3"):
        series = rig.windows.series("m", version, "conversion", 3600)
        n = sum(v == version for v in versions.values())
        assert (series.randomized.n, series.randomized.total, series.reported) == (n, n, n)


def test_a_report_by_routing_key_counts_for_the_version_the_key_routes_to(rig: Rig) -> None:
    for i in range(20):
        served = rig.serve(f"r{i}", f"user-{i}")
        a = rig.recorder.report(report(key=f"user-{i}"))
        assert (a.version, a.joined_by, a.reason) == (served, JOIN_ROUTING_KEY, RouteReason.HASH)


def test_a_key_after_a_weight_change_is_attributed_by_the_current_table(rig: Rig) -> None:
    key = next(f"user-{i}" for i in range(100) if rig.serve(f"r{i}", f"user-{i}") == "3")
    rig.table = routing(weight_ppm=0)  # the candidate's share falls to 0: the key now gets 2
    assert rig.recorder.report(report(key=key)).version == "2"
    assert rig.recorder.report(report(request_id=rig_id(rig, key))).version == "3"


def rig_id(rig: Rig, key: str) -> str:
    return f"r{key.removeprefix('user-')}"


def test_pinned_and_keyless_requests_are_counted_but_do_not_gate(rig: Rig) -> None:
    rig.serve("pinned", "user-1", pinned="1")
    rig.serve("keyless", None)
    pinned = rig.recorder.report(report(request_id="pinned"))
    keyless = rig.recorder.report(report(request_id="keyless"))
    assert (pinned.version, pinned.randomized) == ("1", False)
    assert (keyless.version, keyless.reason, keyless.randomized) == ("2", RouteReason.NO_KEY, False)
    series = rig.windows.series("m", "1", "conversion", 3600)
    assert (series.reported, series.randomized.n) == (1, 0)


def test_an_unknown_or_expired_request_id_is_not_found_and_says_what_to_do(rig: Rig) -> None:
    rig.serve("r1", "user-1")
    with pytest.raises(NotFound, match="report by routing_key") as exc:
        rig.recorder.report(report(request_id="nope"))
    assert "60 s" in str(exc.value) and "outcome_join_ttl_seconds" in str(exc.value)
    rig.clock.advance(61)
    with pytest.raises(NotFound):
        rig.recorder.report(report(request_id="r1"))


def test_an_unknown_request_id_with_a_fallback_key_is_joined_by_the_key(rig: Rig) -> None:
    """Another replica served the request: its key routes there as it did on that replica."""
    for i in range(20):
        version = route(rig.table, "m", f"user-{i}", {}, None).version  # served elsewhere
        a = rig.recorder.report(
            OutcomeReport("m", "conversion", "binary", 1.0, f"elsewhere-{i}", "", f"user-{i}")
        )
        assert (a.version, a.joined_by, a.randomized) == (version, JOIN_ROUTING_KEY, True)


def test_a_known_request_id_wins_over_its_fallback_key(rig: Rig) -> None:
    """Served here: the record says who served it, even after the weight moved the key."""
    key = next(f"user-{i}" for i in range(100) if rig.serve(f"r{i}", f"user-{i}") == "3")
    rig.table = routing(weight_ppm=0)
    a = rig.recorder.report(
        OutcomeReport("m", "conversion", "binary", 1.0, rig_id(rig, key), "", key)
    )
    assert (a.version, a.joined_by) == ("3", JOIN_REQUEST_ID)


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (OutcomeReport("m", "", "binary", 1.0, "r1"), "outcome name missing"),
        (OutcomeReport("m", "9lives", "binary", 1.0, "r1"), "not a valid outcome name"),
        (OutcomeReport("m", "c", "binary", 0.5, "r1"), "binary: its value is 0 or 1"),
        (OutcomeReport("m", "c", "real", float("nan"), "r1"), "finite"),
        (OutcomeReport("m", "c", "real", float("inf"), "r1"), "finite"),
        (OutcomeReport("m", "c", "ordinal", 1.0, "r1"), "kind must be one of"),
        (OutcomeReport("m", "c", "binary", 1.0), "exactly one of request_id"),
        (OutcomeReport("m", "c", "binary", 1.0, "r1", "user-1"), "exactly one of request_id"),
        (OutcomeReport("m", "c", "binary", 1.0, "x" * 300), "at most 256"),
        (OutcomeReport("m", "c", "binary", 1.0, "", "user-1", "k"), "goes with request_id"),
        (OutcomeReport("m", "c", "binary", 1.0, "r1", "", "k" * 300), "at most 256"),
        (OutcomeReport("other", "c", "binary", 1.0, "r1"), "served by model 'm'"),
    ],
)
def test_malformed_reports_are_invalid_and_count_nothing(
    rig: Rig, outcome: OutcomeReport, message: str
) -> None:
    rig.serve("r1", "user-1")
    with pytest.raises(InvalidInput, match=message):
        rig.recorder.report(outcome)
    assert rig.windows.names("m") == []


def test_a_key_of_an_unknown_model_is_not_found(rig: Rig) -> None:
    with pytest.raises(ModelNotFound):
        rig.recorder.report(OutcomeReport("nope", "c", "binary", 1.0, routing_key="u"))


def test_an_outcome_keeps_the_kind_it_was_first_reported_with(rig: Rig) -> None:
    rig.recorder.report(OutcomeReport("m", "score", "real", 2.5, routing_key="u"))
    with pytest.raises(FailedPrecondition, match="is real"):
        rig.recorder.report(OutcomeReport("m", "score", "binary", 1.0, routing_key="u"))


def test_outcome_names_per_model_are_bounded() -> None:
    rig = Rig(max_names=2)
    for name in ("a", "b"):
        rig.recorder.report(OutcomeReport("m", name, "binary", 1.0, routing_key="u"))
    with pytest.raises(Overloaded, match="outcome_max_names"):
        rig.recorder.report(OutcomeReport("m", "c", "binary", 1.0, routing_key="u"))
    rig.recorder.report(OutcomeReport("m", "a", "binary", 0.0, routing_key="u"))  # reuse is fine


def test_windows_roll_and_count_since(rig: Rig) -> None:
    w = rig.windows
    w.add("m", "2", "c", 1.0, True)
    rig.clock.advance(120)
    w.add("m", "2", "c", 0.0, True)
    w.add("m", "2", "c", 1.0, False)
    assert w.series("m", "2", "c", 3600).randomized.n == 2
    assert w.series("m", "2", "c", 60).randomized.n == 1  # the older bucket is out
    assert w.series("m", "2", "c", 3600).reported == 3
    assert w.series("m", "2", "c", 3600, since=rig.clock.now).randomized.total == 0.0


def test_the_ab_view_compares_the_candidate_with_stable(rig: Rig) -> None:
    w = rig.windows
    w.claim("m", "conversion", "binary", 32)
    w.add_sums("m", "2", "conversion", 1000, 100, 100, True)
    w.add_sums("m", "3", "conversion", 1000, 80, 80, True)
    w.add_sums("m", "1", "conversion", 10, 1, 1, False)  # pinned calls: counted, not compared
    (c,) = compare(w, rig.table, "m", 0.95, 3600)
    assert (c.name, c.kind, c.stable, c.candidate) == ("conversion", "binary", "2", "3")
    assert [(v.version, v.stage, v.sample.n, v.reported) for v in c.versions] == [
        ("1", Stage.LOADED, 0, 10),
        ("2", Stage.STABLE, 1000, 1000),
        ("3", Stage.CANARY, 1000, 1000),
    ]
    assert c.difference is not None and c.difference.estimate == pytest.approx(-0.02)
    assert c.difference.lower < -0.02 < c.difference.upper
    assert c.lift is not None and c.lift[0] == pytest.approx(-0.2)
    with pytest.raises(ModelNotFound):
        compare(w, rig.table, "nope", 0.95, 3600)
