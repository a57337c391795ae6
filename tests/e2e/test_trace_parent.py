"""Parent-based sampling: a caller's sampled W3C traceparent is always honoured, and the spans
recorded only for it never inflate the per-version windows that promotion reads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import load_config
from tests.conftest import make_repository

IDLE_RATIO = 0.01  # the default: a model with no rollout traces 1 % of its calls
KEEP, DROP = 0.0, 0.999  # the stage-aware draw: below the ratio keeps the call


@pytest.fixture
def traced(
    tmp_path: Path,
) -> Iterator[tuple[App, InMemorySpanExporter, pb_grpc.GRPCInferenceServiceStub]]:
    exporter = InMemorySpanExporter()
    config = load_config(
        None,
        {
            "models_dir": make_repository(tmp_path),
            "state_dir": tmp_path / "state",
            "port": 0,
            "metrics_port": 0,
            "intra_op_threads": 1,
            "idle_trace_ratio": IDLE_RATIO,
            "stable_trace_ratio": 0.1,
        },
    )
    app = App(config, span_exporters=[exporter])
    app.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            yield app, exporter, pb_grpc.GRPCInferenceServiceStub(channel)
    finally:
        app.stop(0)


def _request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="classifier")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.zeros((1, 4), np.float32).tobytes())
    return request


def _traceparent(sampled: bool) -> tuple[str, int, int]:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    header = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    return header, int(trace_id, 16), int(span_id, 16)


def _windows(app: App) -> tuple[int, float]:
    """The classifier's stable version in the windows: observations, and the scaled count."""
    observed = app.telemetry.windows.summary("classifier", "2", 600).requests
    totals = app.telemetry.windows.totals().get(("classifier", "2"))
    return observed, totals.requests if totals is not None else 0.0


def test_every_call_with_a_sampled_parent_is_exported_under_it(
    traced: tuple[App, InMemorySpanExporter, pb_grpc.GRPCInferenceServiceStub],
) -> None:
    """20 calls with a sampled traceparent: 20 spans, each a child of the caller's span (at 1 %
    stage-aware sampling, about none would be kept by the draw alone)."""
    _, exporter, stub = traced
    parents = []
    for _ in range(20):
        header, trace_id, span_id = _traceparent(sampled=True)
        parents.append((trace_id, span_id))
        stub.ModelInfer(_request(), metadata=[("traceparent", header)])
    spans = [s for s in exporter.get_finished_spans() if s.name == "ModelInfer"]
    assert len(spans) == 20
    got = [(s.context.trace_id, s.parent.span_id) for s in spans if s.context and s.parent]
    assert got == parents


def test_spans_kept_only_for_the_parent_do_not_count_in_the_windows(
    traced: tuple[App, InMemorySpanExporter, pb_grpc.GRPCInferenceServiceStub],
) -> None:
    app, exporter, stub = traced
    app.telemetry.draw = lambda: DROP
    for _ in range(20):
        stub.ModelInfer(_request(), metadata=[("traceparent", _traceparent(sampled=True)[0])])
    assert len(exporter.get_finished_spans()) == 20
    assert _windows(app) == (0, 0.0)
    (first, *_) = exporter.get_finished_spans()
    assert first.attributes is not None
    assert first.attributes["canary.sampled.parent_only"] is True
    assert "canary.sample_weight" not in first.attributes

    # A call the draw keeps counts once, weighted 1/ratio, whatever its parent says.
    app.telemetry.draw = lambda: KEEP
    stub.ModelInfer(_request(), metadata=[("traceparent", _traceparent(sampled=True)[0])])
    assert _windows(app) == (1, pytest.approx(1 / IDLE_RATIO))
    kept = exporter.get_finished_spans()[-1]
    assert kept.attributes is not None and "canary.sampled.parent_only" not in kept.attributes


def test_an_unsampled_parent_is_like_no_parent(
    traced: tuple[App, InMemorySpanExporter, pb_grpc.GRPCInferenceServiceStub],
) -> None:
    """The caller's "not sampled" does not silence stage-aware sampling (windows need their
    evidence): the draw alone decides, and a kept span still continues the caller's trace."""
    app, exporter, stub = traced
    app.telemetry.draw = lambda: DROP
    for _ in range(5):
        stub.ModelInfer(_request(), metadata=[("traceparent", _traceparent(sampled=False)[0])])
    assert exporter.get_finished_spans() == ()
    app.telemetry.draw = lambda: KEEP
    header, trace_id, _ = _traceparent(sampled=False)
    stub.ModelInfer(_request(), metadata=[("traceparent", header)])
    (span,) = exporter.get_finished_spans()
    assert span.context is not None and span.context.trace_id == trace_id
    assert _windows(app) == (1, pytest.approx(1 / IDLE_RATIO))
