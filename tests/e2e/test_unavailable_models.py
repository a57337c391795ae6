"""A model that is known but cannot serve is UNAVAILABLE with the reason, on every endpoint —
whether its versions failed to load or the server is still loading models — never NOT_FOUND."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import load_config
from server.serving.runner import OnnxRunner, Runner
from tests.conftest import make_repository, start_app

STARTING = "server is starting: loading models"


def _infer_request(model: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.zeros((1, 4), np.float32).tobytes())
    return request


def _status(call: object, *args: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args)  # type: ignore[operator]
    return info.value.code(), info.value.details() or ""


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    """A server whose model `broken` has one version, which fails to load."""
    repository = make_repository(tmp_path / "repo")
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    app = start_app(tmp_path, models_dir=repository)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            yield pb_grpc.GRPCInferenceServiceStub(channel)
    finally:
        app.stop(0)


def test_a_model_that_failed_to_load_is_unavailable_with_the_reason_everywhere(
    broken: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    stub = broken
    (entry,) = [
        m for m in stub.RepositoryIndex(pb.RepositoryIndexRequest()).models if m.name == "broken"
    ]
    assert entry.state == "UNAVAILABLE" and "failed to load" in entry.reason
    calls = [
        (stub.ModelInfer, _infer_request("broken")),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="broken")),
        (stub.ModelConfig, pb.ModelConfigRequest(name="broken")),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="broken", version="1")),
    ]
    for call, request in calls:
        code, details = _status(call, request)
        assert code == grpc.StatusCode.UNAVAILABLE, (call, details)
        assert "failed to load" in details, details
    pinned = _infer_request("broken")
    pinned.model_version = "1"
    code, details = _status(stub.ModelInfer, pinned)
    assert (code, "version '1'" in details) == (grpc.StatusCode.UNAVAILABLE, True)
    (answer,) = stub.ModelStreamInfer(iter([_infer_request("broken")]))
    assert "UNAVAILABLE" in answer.error_message and "failed to load" in answer.error_message
    assert not stub.ModelReady(pb.ModelReadyRequest(name="broken")).ready
    # A model the repository does not have is still NOT_FOUND.
    assert _status(stub.ModelInfer, _infer_request("nope"))[0] == grpc.StatusCode.NOT_FOUND


def test_while_models_load_inference_is_unavailable_not_not_found(tmp_path: Path) -> None:
    """The port opens before the models load: until they have, every model is UNAVAILABLE
    ("server is starting"), including names the server cannot yet tell apart from its own."""
    gate = threading.Event()

    def slow(path: Path) -> Runner:
        assert gate.wait(30), "the test never let loading finish"
        return OnnxRunner(path, intra_op_threads=1)

    config = load_config(
        None,
        {
            "models_dir": make_repository(tmp_path),
            "state_dir": tmp_path / "state",
            "port": 0,
            "metrics_port": 0,
        },
    )
    app = App(config, runner_factory=slow)
    starting = threading.Thread(target=app.start)
    starting.start()
    try:
        for _ in range(500):
            if app.port:
                break
            threading.Event().wait(0.01)
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            grpc.channel_ready_future(channel).result(timeout=10)
            assert not stub.ServerReady(pb.ServerReadyRequest()).ready
            for call, request in [
                (stub.ModelInfer, _infer_request("classifier")),
                (stub.ModelInfer, _infer_request("nope")),
                (stub.ModelMetadata, pb.ModelMetadataRequest(name="classifier")),
                (stub.ModelConfig, pb.ModelConfigRequest(name="classifier", version="1")),
            ]:
                code, details = _status(call, request)
                assert (code, STARTING in details) == (grpc.StatusCode.UNAVAILABLE, True), details
            (answer,) = stub.ModelStreamInfer(iter([_infer_request("classifier")]))
            assert STARTING in answer.error_message
            assert not stub.ModelReady(pb.ModelReadyRequest(name="classifier")).ready
            gate.set()
            starting.join(timeout=30)
            assert stub.ServerReady(pb.ServerReadyRequest()).ready
            assert stub.ModelInfer(_infer_request("classifier")).model_version == "2"
    finally:
        gate.set()
        starting.join(timeout=30)
        app.stop(0)
