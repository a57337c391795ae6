"""The data plane through real stubs against a real server: answers and the bad-input matrix."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from client.errors import ClientError
from client.inference import InferenceClient
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.serving.dtypes import encode_bytes

X = np.array([[0.5, -1.0, 2.0, 0.1], [1.5, 0.3, -0.7, 2.2]], dtype=np.float32)


def direct(app: App, model: str, version: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What onnxruntime itself answers for the same file."""
    path = app.config.models_dir / model / version / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def infer_request(**inputs: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="classifier")
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype="FP32", shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    return request


def test_classifier_answers_like_onnxruntime(app: App, client: InferenceClient) -> None:
    result = client.infer("classifier", {"input": X}, version="1")
    assert result.version == "1"
    np.testing.assert_allclose(
        result.outputs["scores"], direct(app, "classifier", "1", {"input": X})[0], rtol=1e-6
    )


def test_request_without_version_gets_highest(app: App, client: InferenceClient) -> None:
    result = client.infer("classifier", {"input": X})
    assert result.version == "2"
    assert result.stage == "stable"
    np.testing.assert_allclose(
        result.outputs["scores"], direct(app, "classifier", "2", {"input": X})[0], rtol=1e-6
    )


def test_int64_and_bytes_models(app: App, client: InferenceClient) -> None:
    """INT64 and BYTES models answer exactly what onnxruntime answers."""
    ids = np.array([[1, 2, 3], [10, -4, 7]], dtype=np.int64)
    out = client.infer("counter", {"ids": ids})
    want = direct(app, "counter", "1", {"ids": ids})
    np.testing.assert_array_equal(out.outputs["total"], want[0])
    np.testing.assert_array_equal(out.outputs["maximum"], want[1])
    text = np.array([b"hello", "wörld".encode()], dtype=object)
    shouted = client.infer("shouter", {"text": text})
    want_text = direct(app, "shouter", "1", {"text": np.array(["hello", "wörld"], dtype=object)})
    assert list(shouted.outputs["upper"]) == [s.encode() for s in want_text[0]]
    assert shouted.outputs["upper"][0] == b"HELLO"


def test_typed_contents_equal_raw(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """Inputs sent as typed contents get the same answer as raw inputs."""
    raw = stub.ModelInfer(infer_request(input=X))
    typed = pb.ModelInferRequest(model_name="classifier")
    t = typed.inputs.add(name="input", datatype="FP32", shape=X.shape)
    t.contents.fp32_contents.extend(X.flatten().tolist())
    answer = stub.ModelInfer(typed)
    assert answer.raw_output_contents == raw.raw_output_contents


def test_requested_output_subset(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """Asking for one output returns only that output."""
    request = pb.ModelInferRequest(model_name="counter")
    ids = np.array([[1, 2]], dtype=np.int64)
    request.inputs.add(name="ids", datatype="INT64", shape=ids.shape)
    request.raw_input_contents.append(ids.tobytes())
    request.outputs.add(name="maximum")
    response = stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["maximum"]
    assert np.frombuffer(response.raw_output_contents[0], dtype=np.int64).tolist() == [2]


def _fp32(name: str, shape: list[int], data: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="classifier")
    request.inputs.add(name=name, datatype="FP32", shape=shape)
    request.raw_input_contents.append(data)
    return request


def _mixed() -> pb.ModelInferRequest:
    request = _fp32("input", [1, 4], X[:1].tobytes())
    request.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])
    return request


def _typed(field: str, values: list[object], shape: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="classifier")
    t = request.inputs.add(name="input", datatype="FP32", shape=shape)
    getattr(t.contents, field).extend(values)
    return request


def _bytes(raw: bytes, shape: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="shouter")
    request.inputs.add(name="text", datatype="BYTES", shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _two_inputs_one_raw() -> pb.ModelInferRequest:
    request = _fp32("input", [1, 4], X[:1].tobytes())
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    return request


def _duplicate() -> pb.ModelInferRequest:
    request = _fp32("input", [1, 4], X[:1].tobytes())
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(X[:1].tobytes())
    return request


def _unknown_output() -> pb.ModelInferRequest:
    request = infer_request(input=X)
    request.outputs.add(name="zzz")
    return request


BAD = [
    ("unknown model", pb.ModelInferRequest(model_name="nope"), "NOT_FOUND", "nope"),
    (
        "unknown version",
        pb.ModelInferRequest(model_name="classifier", model_version="9"),
        "NOT_FOUND",
        "version '9'",
    ),
    (
        "missing input",
        pb.ModelInferRequest(model_name="classifier"),
        "INVALID_ARGUMENT",
        "missing input",
    ),
    ("unknown input", _fp32("bogus", [1, 4], X[:1].tobytes()), "INVALID_ARGUMENT", "'bogus'"),
    ("duplicate input", _duplicate(), "INVALID_ARGUMENT", "more than once"),
    (
        "wrong datatype",
        _typed("int_contents", [1, 2, 3, 4], [1, 4]),
        "INVALID_ARGUMENT",
        "contents.fp32_contents",
    ),
    ("wrong rank", _fp32("input", [4], X[0].tobytes()), "INVALID_ARGUMENT", "rank 2"),
    (
        "wrong dimension",
        _fp32("input", [1, 3], X[0, :3].tobytes()),
        "INVALID_ARGUMENT",
        "dimension 1 must be 4",
    ),
    ("raw length", _fp32("input", [1, 4], b"\x00" * 15), "INVALID_ARGUMENT", "15 bytes"),
    ("raw count", _two_inputs_one_raw(), "INVALID_ARGUMENT", "raw_input_contents has 1 entries"),
    ("raw and typed mixed", _mixed(), "INVALID_ARGUMENT", "not both"),
    (
        "typed wrong length",
        _typed("fp32_contents", [1.0, 2.0], [1, 4]),
        "INVALID_ARGUMENT",
        "needs 4 values",
    ),
    (
        "bytes framing",
        _bytes(struct.pack("<I", 50) + b"abc", [1]),
        "INVALID_ARGUMENT",
        "declares 50 bytes",
    ),
    ("bytes count", _bytes(encode_bytes([b"a", b"b"]), [3]), "INVALID_ARGUMENT", "needs 3 BYTES"),
    ("unknown output", _unknown_output(), "INVALID_ARGUMENT", "'zzz'"),
]


@pytest.mark.parametrize(("case", "request_", "code", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_clear_status(
    stub: pb_grpc.GRPCInferenceServiceStub,
    client: InferenceClient,
    case: str,
    request_: pb.ModelInferRequest,
    code: str,
    needle: str,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request_)
    assert info.value.code().name == code, info.value.details()
    assert needle in info.value.details()
    # ... and the server keeps serving everyone else.
    assert client.infer("classifier", {"input": X}).version == "2"


def test_wrong_datatype_name(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """A datatype the model does not take is INVALID_ARGUMENT naming both."""
    request = pb.ModelInferRequest(model_name="classifier")
    request.inputs.add(name="input", datatype="FP64", shape=[1, 4])
    request.raw_input_contents.append(np.zeros((1, 4)).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected datatype FP32, got 'FP64'" in info.value.details()


def test_oversized_message_is_resource_exhausted(tmp_path, client: InferenceClient) -> None:
    from tests.support.servers import start_app

    small = start_app(tmp_path, max_message_bytes=4096)
    try:
        with InferenceClient(f"127.0.0.1:{small.port}") as c:
            big = np.zeros((2000, 4), dtype=np.float32)
            with pytest.raises(ClientError) as info:
                c.infer("classifier", {"input": big})
            assert info.value.code == "RESOURCE_EXHAUSTED"
            assert c.infer("classifier", {"input": X}).version == "2"
    finally:
        small.stop(0)


def test_metadata_config_and_statistics(
    client: InferenceClient, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    """Metadata, config and Triton-style statistics describe each version."""
    meta = client.metadata("classifier")
    assert list(meta.versions) == ["1", "2"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input", "FP32", [-1, 4])
    ]
    config = stub.ModelConfig(pb.ModelConfigRequest(name="counter")).config
    assert config.platform == "onnxruntime_onnx"
    assert [(i.name, pb.DataType.Name(i.data_type)) for i in config.input] == [
        ("ids", "TYPE_INT64")
    ]
    client.infer("classifier", {"input": X}, version="1")
    stats = {s.version: s for s in client.statistics("classifier")}
    inf = stats["1"].inference_stats
    assert inf.success.count >= 1 and inf.success.ns > 0
    # Triton's meaning, which perf_analyzer checks: one queue and compute entry per request.
    phases = (inf.queue, inf.compute_input, inf.compute_infer, inf.compute_output)
    assert [p.count for p in phases] == [inf.success.count] * 4
    assert 0 <= inf.queue.ns < inf.success.ns  # the wait for a slot of the version
    assert all(p.ns > 0 for p in phases[1:])
    assert stats["1"].execution_count == inf.success.count  # one at a time: nothing merged
    # Triton's inference_count counts rows (X has 2), as the batch statistics do.
    rows = sum(b.batch_size * b.compute_infer.count for b in stats["1"].batch_stats)
    assert stats["1"].inference_count == rows >= len(X) * inf.success.count


def test_health_and_readiness(client: InferenceClient, target: str) -> None:
    """The server, its models and grpc.health all report serving."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    assert client.live() and client.ready()
    assert client.model_ready("classifier", "1")
    assert not client.model_ready("classifier", "7")
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(target: str) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_stream_infer_answers_each_request_and_reports_errors_inline(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    good = infer_request(input=X)
    bad = pb.ModelInferRequest(model_name="nope")
    replies = list(stub.ModelStreamInfer(iter([good, bad, good])))
    assert [bool(r.error_message) for r in replies] == [False, True, False]
    assert "nope" in replies[1].error_message
    assert replies[0].infer_response.model_version == "2"
