"""What one request may make the server allocate: declared shapes are bounded by
max_message_bytes before anything runs (zero dimensions counted as 1, so a 32-byte request
cannot ask for gigabytes of outputs), outputs over the limit are refused before they are
encoded, shapes numpy cannot represent are INVALID_ARGUMENT on ModelInfer and ModelStreamInfer
alike, and a failed call's tensors are freed with the call."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from tests.conftest import start_app

LIMIT = 64 * 2**20  # the default max_message_bytes, which the module's `app` serves with
HUGE = 2**62


def _status_mb(key: str) -> int:
    """A line of /proc/self/status (VmRSS: resident now, VmHWM: the peak), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    pytest.skip("needs /proc/self/status (Linux)")


def _reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")


def ids(shape: list[int], raw: bytes = b"") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="counter")
    request.inputs.add(name="ids", datatype="INT64", shape=shape)
    request.raw_input_contents.append(raw)
    return request


def test_a_zero_dim_cannot_amplify_a_tiny_request(
    app: App, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    # 32 bytes on the wire; the counter model would answer 2 x 20,000,000 INT64 (320 MB).
    request = ids([20_000_000, 0])
    assert request.ByteSize() < 40
    _reset_peak()
    before = _status_mb("VmHWM")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=30)
    grown = _status_mb("VmHWM") - before
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    assert "input 'ids'" in details and "[20000000, 0]" in details and str(LIMIT) in details
    assert grown < LIMIT // 2**20, f"the server's peak RSS grew by {grown} MiB"


def test_shapes_numpy_cannot_hold_are_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    for shape in ([0, HUGE], [HUGE, 0], [0, 2**63 - 1]):
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(ids(shape))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, shape
        assert "input 'ids'" in info.value.details()


def test_a_bad_shape_never_ends_a_stream(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    good = ids([1, 2], np.array([[3, 4]], dtype=np.int64).tobytes())
    sent = [ids([0, HUGE]), good, ids([20_000_000, 0]), ids([HUGE, 0]), good]
    replies = list(stub.ModelStreamInfer(iter(sent), timeout=30))
    assert [bool(r.error_message) for r in replies] == [True, False, True, True, False]
    assert all("input 'ids'" in r.error_message for r in replies if r.error_message)
    total = replies[-1].infer_response.raw_output_contents[0]
    assert np.frombuffer(total, np.int64).tolist() == [7]


def test_zero_dims_within_the_limit_still_answer(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    answer = stub.ModelInfer(ids([1000, 0]))
    assert list(answer.outputs[0].shape) == [1000]
    assert not np.frombuffer(answer.raw_output_contents[0], np.int64).any()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("small"), max_message_bytes=8 * 2**20)
    yield app
    app.stop(0)


def test_outputs_over_the_limit_are_refused_and_freed_with_the_call(small: App) -> None:
    # [2**20, 0] INT64 declares 8 MiB: accepted; the two [2**20] INT64 outputs hold 16 MiB.
    request = ids([2**20, 0])
    with grpc.insecure_channel(f"127.0.0.1:{small.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def refused() -> None:
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "answered with 16777216 bytes of outputs" in info.value.details()

        refused()  # the first call sizes onnxruntime's arena
        gc.disable()  # only reference counting frees now: a cycle would keep 16 MiB a call
        try:
            before = _status_mb("VmRSS")
            for _ in range(8):
                refused()
            grown = _status_mb("VmRSS") - before
        finally:
            gc.enable()
    assert grown < 32, f"8 refused calls left {grown} MiB behind"


def test_a_model_that_refuses_empty_tensors_answers_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    # The shouter's StringNormalizer refuses N = 0: the request's doing, not a broken version.
    empty = pb.ModelInferRequest(model_name="shouter")
    empty.inputs.add(name="text", datatype="BYTES", shape=[0])
    empty.raw_input_contents.append(b"")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(empty)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("input 'text': shape [0] is empty")
    good = pb.ModelInferRequest(model_name="shouter")
    good.inputs.add(name="text", datatype="BYTES", shape=[1])
    good.raw_input_contents.append(b"\x02\x00\x00\x00hi")
    replies = list(stub.ModelStreamInfer(iter([empty, good])))
    assert replies[0].error_message.startswith("input 'text': shape [0] is empty")
    assert not replies[1].error_message


def test_a_stream_answer_over_the_limit_never_ends_the_stream(small: App) -> None:
    limit = small.config.max_message_bytes
    # Outputs of exactly the limit pass the output check, but the message around them is over.
    exact = ids([limit // 16, 0])
    # A request id the answer echoes: the request fits, its answer does not.
    echoed = pb.ModelInferRequest(model_name="classifier", id="x" * (limit - 200))
    echoed.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    echoed.raw_input_contents.append(bytes(16))
    echoed.id += "x" * (limit - 10 - echoed.ByteSize())  # the answer adds its parameters
    # An error that quotes a long shape back: about twice the bytes the request spent on it.
    long_error = ids([HUGE] * (limit // 18))
    good = ids([1, 2], np.array([[3, 4]], dtype=np.int64).tobytes())
    unlimited = [("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(f"127.0.0.1:{small.port}", options=unlimited) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        sent = [exact, good, echoed, good, long_error, good]
        replies = list(stub.ModelStreamInfer(iter(sent), timeout=60))
    assert [bool(r.error_message) for r in replies] == [True, False] * 3
    assert "over the limit of 8388608 bytes" in replies[0].error_message
    assert "over the limit of 8388608 bytes" in replies[2].error_message
    assert replies[4].error_message.startswith("input 'ids'")
    assert all(r.ByteSize() <= limit for r in replies)
