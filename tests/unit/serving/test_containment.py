"""Contained failures in the data plane: a candidate whose process died or whose run broke its
memory budget falls back to stable (saying why) and is counted; stable's own such failure
reaches its caller with its own status, not as a model failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protos.inference import grpc_service_pb2 as pb
from server.errors import MemoryBudgetExceeded, VersionCrashed, status_name
from server.rollout.controller import RolloutController
from server.rollout.router import RoutingTable
from server.rollout.state import StartRollout
from server.serving.dataplane import PARAM_REASON, PARAM_STAGE, ROUTING_KEY_HEADER, DataPlane
from server.serving.dtypes import by_oip
from server.serving.limits import Policy
from server.serving.registry import Registry
from server.serving.schedulers import Schedulers
from server.serving.signature import Signature, TensorSpec
from server.testing import FakeClock, FakeRunner, MemoryStore

FP32 = by_oip("FP32")
assert FP32 is not None
SIGNATURE = Signature(
    inputs=(TensorSpec("x", FP32, (None,)),), outputs=(TensorSpec("y", FP32, (None,)),)
)
CRASHED = VersionCrashed("m", "2", "died (killed by SIGKILL)")
OVER = MemoryBudgetExceeded("m", "2", 512, "std::bad_alloc")


def plane(tmp_path: Path, runners: dict[str, FakeRunner], canary_ppm: int) -> DataPlane:
    for version in runners:
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "model.onnx").write_bytes(b"")
    registry = Registry(tmp_path, lambda path: runners[path.parent.name])
    registry.load_all()
    dataplane = DataPlane(registry, RoutingTable(), schedulers=Schedulers(lambda m: Policy()))

    def publish(table: RoutingTable) -> None:
        dataplane.table = table

    rollouts = RolloutController(
        MemoryStore(),
        ready_versions=registry.ready_versions,
        publish=publish,
        clock=FakeClock(now=1_000.0),
    )
    rollouts.adopt({"m": "1"})
    if canary_ppm:
        rollouts.execute("m", StartRollout("2", canary_ppm=canary_ppm), actor="t", reason="t")
    dataplane.starting = False
    return dataplane


def request(version: str = "") -> pb.ModelInferRequest:
    r = pb.ModelInferRequest(model_name="m", model_version=version)
    r.inputs.add(name="x", datatype="FP32", shape=[2])
    r.raw_input_contents.append(np.asarray([1.5, -2.0], np.float32).tobytes())
    return r


@pytest.mark.parametrize(
    ("error", "reason"), [(CRASHED, "candidate_crashed"), (OVER, "candidate_over_budget")]
)
def test_a_contained_candidate_failure_falls_back_to_stable(
    tmp_path: Path, error: Exception, reason: str
) -> None:
    stable, candidate = FakeRunner(signature=SIGNATURE), FakeRunner(signature=SIGNATURE)
    dp = plane(tmp_path, {"1": stable, "2": candidate}, canary_ppm=1_000_000)
    stable.calls = candidate.calls = 0  # warm-up ran each once
    candidate.error = error
    response = dp.infer(request(), {ROUTING_KEY_HEADER: "k"})
    assert response.model_version == "1"
    assert response.parameters[PARAM_STAGE].string_param == "stable"
    assert response.parameters[PARAM_REASON].string_param == reason
    assert candidate.calls == 1 and stable.calls == 1
    scheduler = dp.schedulers.find("m", "2")  # type: ignore[union-attr]
    assert scheduler is not None and scheduler.stats.fallbacks == 1


@pytest.mark.parametrize(
    ("error", "code"), [(CRASHED, "UNAVAILABLE"), (OVER, "RESOURCE_EXHAUSTED")]
)
def test_stables_contained_failure_reaches_the_caller_as_itself(
    tmp_path: Path, error: Exception, code: str
) -> None:
    stable = FakeRunner(signature=SIGNATURE)
    dp = plane(tmp_path, {"1": stable}, canary_ppm=0)
    stable.error = error
    with pytest.raises(type(error)) as raised:
        dp.infer(request(), {})
    assert status_name(raised.value) == code


def test_a_pinned_call_to_a_crashed_candidate_does_not_fall_back(tmp_path: Path) -> None:
    runners = {"1": FakeRunner(signature=SIGNATURE), "2": FakeRunner(signature=SIGNATURE)}
    dp = plane(tmp_path, runners, canary_ppm=1_000_000)
    runners["1"].calls = 0
    runners["2"].error = CRASHED
    with pytest.raises(VersionCrashed, match="isolated process died"):
        dp.infer(request("2"), {})
    assert runners["1"].calls == 0


def test_the_messages_name_the_cause_and_the_budget() -> None:
    assert "restarting" in str(CRASHED) and "SIGKILL" in str(CRASHED)
    assert "512 MiB, memory_budget_mb" in str(OVER) and "bad_alloc" in str(OVER)
