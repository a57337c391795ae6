"""One error path for unary and streaming calls: expected errors keep their code, surprises
become INTERNAL with a request id (traceback in the server log only), and in ModelStreamInfer a
message that fails unexpectedly gets its own error_message while the stream goes on."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from protos.canaryserve.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import load_config
from server.serving.dtypes import by_oip
from server.serving.signature import Signature, TensorSpec

FP32 = by_oip("FP32")
assert FP32 is not None
SIGNATURE = Signature(
    inputs=(TensorSpec("x", FP32, (None,)),), outputs=(TensorSpec("y", FP32, (None,)),)
)
REQUEST_ID = re.compile(r"internal server error \(request id ([0-9a-f]{12})\)")


class BrokenEncodeRunner:
    """Echoes `x` as `y`, except that for a negative x[0] it returns no arrays at all: a bug
    past the model run (the response encoder raises ValueError), not a model failure."""

    signature = SIGNATURE

    def run(
        self, outputs: Sequence[str], feeds: dict[str, npt.NDArray[np.generic]]
    ) -> list[npt.NDArray[np.generic]]:
        x = feeds["x"]
        return [] if x.size and x.flat[0] < 0 else [x]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("stream-errors")
    model_file = tmp / "models" / "echo" / "1" / "model.onnx"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(b"not read: the runner factory ignores it")
    config = load_config(
        None,
        {
            "models_dir": tmp / "models",
            "state_dir": tmp / "state",
            "port": 0,
            "metrics_port": -1,
            "workers": 8,
            "admin_tokens": {"ops": "ops-token"},
        },
    )
    app = App(config, runner_factory=lambda _path: BrokenEncodeRunner())
    app.start()
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def channel(app: App) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield channel


def echo(value: float) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="FP32", shape=[1])
    request.raw_input_contents.append(np.array([value], dtype=np.float32).tobytes())
    return request


def test_unary_surprise_is_internal_with_a_request_id(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(echo(-1.0))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    found = REQUEST_ID.fullmatch(info.value.details())
    assert found, info.value.details()
    assert _logged_with_traceback(caplog, found.group(1))


def test_stream_message_surprise_is_its_error_message_and_the_stream_goes_on(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    replies = list(stub.ModelStreamInfer(iter([echo(1.0), echo(-1.0), echo(2.0)])))
    assert len(replies) == 3
    assert not replies[0].error_message and not replies[2].error_message
    assert np.frombuffer(replies[2].infer_response.raw_output_contents[0], np.float32)[0] == 2.0
    found = REQUEST_ID.fullmatch(replies[1].error_message)
    assert found, replies[1].error_message  # no exception text reaches the caller
    assert _logged_with_traceback(caplog, found.group(1))


def test_expected_errors_on_a_stream_keep_their_message(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    bad = pb.ModelInferRequest(model_name="nope")
    replies = list(stub.ModelStreamInfer(iter([bad, echo(3.0)])))
    assert "model 'nope' is not in the repository" in replies[0].error_message
    assert not replies[1].error_message


def test_watch_rollouts_surprise_is_internal_with_a_request_id(
    app: App,
    channel: grpc.Channel,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(model: str | None) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.rollouts, "watch", broken)
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    auth = (("authorization", "Bearer ops-token"),)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.WatchRollouts(admin_pb2.WatchRolloutsRequest(), metadata=auth, timeout=10))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    found = REQUEST_ID.fullmatch(info.value.details())
    assert found, info.value.details()
    assert _logged_with_traceback(caplog, found.group(1))


def test_watch_rollouts_expected_errors_keep_their_code(channel: grpc.Channel) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.WatchRollouts(admin_pb2.WatchRolloutsRequest(), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    auth = (("authorization", "Bearer ops-token"),)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.WatchRollouts(admin_pb2.WatchRolloutsRequest(model="nope"), metadata=auth))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def _logged_with_traceback(caplog: pytest.LogCaptureFixture, request_id: str) -> bool:
    return any(
        request_id in record.getMessage() and record.exc_info is not None
        for record in caplog.records
        if record.levelno >= logging.ERROR
    )
