"""Telemetry at the level a user sees: spans per inference, windows per version, linked shadows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from client.admin import AdminClient
from client.errors import ClientError
from client.inference import InferenceClient
from models.build import build_classifier_perturbed
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import load_config
from server.telemetry.tracing import key_hash
from tests.support.servers import make_repository, start_app

X = np.zeros((1, 4), np.float32)
TOKEN = "telemetry-token"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)  # loading needs the admin token


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[App, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    config = load_config(
        None,
        {
            "models_dir": make_repository(tmp_path),
            "state_dir": tmp_path / "state",
            "port": 0,
            "metrics_port": 0,
            "admin_tokens": {"ops": TOKEN},
            "models": {"classifier": {"stable": "1"}},
            "stable_trace_ratio": 1.0,  # every call traced: these tests count spans
            "shadow_timeout_seconds": 60.0,  # a shadow run is compared, however loaded the machine
            "idle_trace_ratio": 1.0,
        },
    )
    app = App(config, span_exporters=[exporter])
    app.start()
    yield app, exporter
    app.stop(0)


def test_one_span_per_inference_and_none_for_health(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    app, exporter = traced
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        assert c.live() and c.ready()
        c.infer("classifier", {"input": X}, routing_key="alice")
        with pytest.raises(ClientError):
            c.infer("classifier", {"input": np.zeros((1, 3), np.float32)})
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["ModelInfer", "ModelInfer"]
    ok, bad = spans
    assert ok.attributes is not None and bad.attributes is not None
    assert ok.attributes["rpc.system"] == "grpc"
    assert ok.attributes["rpc.method"] == "ModelInfer"
    assert ok.attributes["rpc.grpc.status_code"] == 0
    assert ok.attributes["canary.model"] == "classifier"
    assert ok.attributes["canary.version"] == "1"
    assert ok.attributes["canary.stage"] == "stable"
    assert ok.attributes["canary.routing_key.hash"] == key_hash("alice")
    assert "alice" not in str(dict(ok.attributes))
    assert bad.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert not bad.status.is_ok


def test_calls_that_fail_before_routing_and_stream_calls_are_traced(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    """An unknown model or a malformed routing key fails before there is a stage to sample:
    traced always, with its status. Stream calls get spans named after their method."""
    app, exporter = traced
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="classifier", id="r-1")
        request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        request.raw_input_contents.append(X.tobytes())
        unknown = pb.ModelInferRequest()
        unknown.CopyFrom(request)
        unknown.model_name = "nope"
        bad_key = pb.ModelInferRequest()
        bad_key.CopyFrom(request)
        bad_key.parameters["routing_key"].int64_param = 7
        for wrong, code in [(unknown, grpc.StatusCode.NOT_FOUND), (bad_key, None)]:
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(wrong)
            assert err.value.code() == (code or grpc.StatusCode.INVALID_ARGUMENT)
        answers = list(stub.ModelStreamInfer(iter([request, unknown])))
    assert answers[0].infer_response.model_version == "1"
    assert "nope" in answers[1].error_message
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["ModelInfer"] * 2 + ["ModelStreamInfer"] * 2
    codes = [s.attributes["canary.status"] for s in spans if s.attributes is not None]
    assert codes == ["NOT_FOUND", "INVALID_ARGUMENT", "OK", "NOT_FOUND"]
    for span in spans:
        assert span.attributes is not None and span.attributes["canary.request_id"] == "r-1"
        assert span.start_time is not None and span.end_time is not None
        assert 0 < span.end_time - span.start_time < 10**10  # starts when the call arrived
    assert "canary.model" not in (spans[0].attributes or {})  # never routed
    assert (spans[2].attributes or {})["canary.model"] == "classifier"


def test_traceparent_continues_the_callers_trace(traced: tuple[App, InMemorySpanExporter]) -> None:
    app, exporter = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="classifier")
        request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        request.raw_input_contents.append(X.tobytes())
        stub.ModelInfer(request, metadata=[("traceparent", f"00-{trace_id}-{parent}-01")])
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent


def test_windows_attribute_errors_to_the_version_that_ran(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    app, _ = traced
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        for _ in range(5):
            c.infer("classifier", {"input": X}, version="2")
        with pytest.raises(ClientError):
            c.infer("classifier", {"input": np.zeros((2, 5), np.float32)}, version="2")
        c.infer("classifier", {"input": X})
    v2 = app.telemetry.windows.summary("classifier", "2", window_s=60)
    v1 = app.telemetry.windows.summary("classifier", "1", window_s=60)
    assert (v2.requests, v2.errors) == (6, 1)
    assert len(v2.error_trace_ids) == 1 and len(v2.error_trace_ids[0]) == 32
    assert (v1.requests, v1.errors) == (1, 0)
    assert v2.p50_ms is not None and v2.p50_ms > 0


def test_shadow_runs_get_spans_linked_to_the_primary(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    app, exporter = traced
    build_classifier_perturbed(app.config.models_dir / "classifier" / "3" / "model.onnx")
    with InferenceClient(f"127.0.0.1:{app.port}", metadata=OPERATOR) as c:
        c.load("classifier")
        with AdminClient(grpc.insecure_channel(f"127.0.0.1:{app.port}"), TOKEN) as admin:
            admin.start("classifier", "3", shadow_ppm=1_000_000)
        c.infer("classifier", {"input": X}, routing_key="bob", request_id="req-1")
    assert app.shadow.force_flush(10)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    primary, shadow = spans["ModelInfer"], spans["shadow"]
    assert shadow.links and shadow.links[0].context.span_id == primary.context.span_id
    assert shadow.attributes is not None
    assert shadow.attributes["canary.shadow.version"] == "3"
    assert shadow.attributes["canary.request_id"] == "req-1"
    assert shadow.attributes["canary.shadow.disagree"] is False


def test_stage_aware_sampling_records_every_candidate_request(tmp_path: Path) -> None:
    """Stable requests are traced at stable_trace_ratio; candidate requests always."""
    app = start_app(tmp_path, admin_tokens={"ops": TOKEN}, stable_trace_ratio=0.02)
    app.telemetry.draw = random.Random(7).random  # the same sample every run
    try:
        target = f"127.0.0.1:{app.port}"
        with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
            admin.start("classifier", "1", canary_ppm=500_000)
        with InferenceClient(target) as c:
            versions = [
                c.infer("classifier", {"input": X}, routing_key=f"k{i}").version for i in range(300)
            ]
        canary = app.telemetry.windows.summary("classifier", "1", window_s=60)
        stable = app.telemetry.windows.summary("classifier", "2", window_s=60)
        totals = app.telemetry.windows.totals()
    finally:
        app.stop(0)
    assert canary.requests == versions.count("1") > 0
    assert 0 < stable.requests < versions.count("2") / 4
    # Scaled totals estimate the real stable count: each recorded span weighs 1/ratio.
    assert totals[("classifier", "2")].requests == stable.requests * 50


def test_a_model_without_rollout_is_traced_at_the_idle_ratio(tmp_path: Path) -> None:
    """No rollout: idle_trace_ratio, weighted; from a rollout's start: stable_trace_ratio."""
    app = start_app(
        tmp_path, admin_tokens={"ops": TOKEN}, idle_trace_ratio=0.02, stable_trace_ratio=1.0
    )
    app.telemetry.draw = random.Random(7).random  # the same sample every run
    try:
        target = f"127.0.0.1:{app.port}"
        with InferenceClient(target) as c:
            for _ in range(200):
                c.infer("classifier", {"input": X})
            idle = app.telemetry.windows.summary("classifier", "2", window_s=60).requests
            totals = app.telemetry.windows.totals()[("classifier", "2")].requests
            with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
                admin.start("classifier", "1", shadow_ppm=0, canary_ppm=0)
            for _ in range(50):
                c.infer("classifier", {"input": X})
        during = app.telemetry.windows.summary("classifier", "2", window_s=60).requests
        statistics = app.registry.get("classifier", "2").stats.success_count
    finally:
        app.stop(0)
    assert 0 < idle < 200 / 4
    assert totals == idle * 50  # each idle span weighs 1/0.02
    assert during == idle + 50  # the rollout's stable traffic: every call, at ratio 1.0
    assert statistics == 250  # ModelStatistics counts every request, traced or not


def test_status_numbers_match_grpc() -> None:
    """Telemetry's own table of gRPC status numbers (it imports no grpc) matches the library's."""
    import grpc

    from server.telemetry import tracing

    assert {c.name: c.value[0] for c in grpc.StatusCode} == tracing._STATUS_NUMBER
