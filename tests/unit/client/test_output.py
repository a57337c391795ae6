"""How operator commands print answers: messages as JSON-ready data and a rollout on one line."""

from __future__ import annotations

import argparse
import json

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from client.output import emit, message_data, percent, rollout_line
from protos.canaryserve.admin.v1 import admin_pb2 as pb


def _rollout(**fields: object) -> pb.Rollout:
    base: dict[str, object] = {"model": "classifier", "stable_version": "2", "revision": 7}
    return pb.Rollout(**{**base, **fields})  # type: ignore[arg-type]


def test_message_data_keeps_64_bit_numbers_names_enums_and_dates_timestamps() -> None:
    at = Timestamp(seconds=1_700_000_000)
    rollout = _rollout(
        phase=pb.PHASE_CANARY,
        revision=2**40,
        updated_at=at,
        cohort_rules=[pb.CohortRule(metadata_key="region", value="eu")],
    )
    assert message_data(rollout) == {
        "model": "classifier",
        "stable_version": "2",
        "phase": "PHASE_CANARY",
        "revision": 2**40,  # protobuf's own JSON mapping would quote it
        "updated_at": "2023-11-14T22:13:20Z",
        "cohort_rules": [{"metadata_key": "region", "value": "eu"}],
    }


def test_message_data_leaves_unset_fields_out_and_keeps_maps() -> None:
    request = pb.RouteRequest(model="m", metadata={"region": "eu"})
    assert message_data(request) == {"model": "m", "metadata": {"region": "eu"}}


@pytest.mark.parametrize(
    ("ppm", "text"), [(0, "0%"), (50_000, "5%"), (1, "0.0001%"), (1_000_000, "100%")]
)
def test_percent_shows_ppm_as_a_short_percentage(ppm: int, text: str) -> None:
    assert percent(ppm) == text


def test_rollout_line_names_the_phase_and_the_candidates_share() -> None:
    idle = _rollout(phase=pb.PHASE_IDLE)
    assert rollout_line(idle) == "classifier       stable 2    idle          rev 7"
    canary = _rollout(
        phase=pb.PHASE_CANARY,
        candidate_version="3",
        canary_weight_ppm=50_000,
        shadow_rate_ppm=0,
        guarded=True,
    )
    assert rollout_line(canary) == (
        "classifier       stable 2    canary       candidate 3 canary 5% shadow 0% (guarded)  rev 7"
    )


def test_emit_prints_json_or_text(capsys: pytest.CaptureFixture[str]) -> None:
    emit(argparse.Namespace(json=True), {"b": 1, "a": [2]}, "text")
    emit(argparse.Namespace(json=False), {"b": 1}, "text")
    out = capsys.readouterr().out
    assert out == json.dumps({"a": [2], "b": 1}, indent=2) + "\ntext\n"
