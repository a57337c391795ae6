"""Untrusted names in status messages: echoed shortened, so the caller gets the real status.

A status message travels as a header; past grpc's metadata limit the client gets
RESOURCE_EXHAUSTED "metadata size exceeds hard limit" instead of the error that explains
what was wrong with its request.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.api.status import MAX_MESSAGE_BYTES, message_for
from server.errors import SHOWN_CHARS, InvalidInput, ModelNotFound, shorten

HUGE = 20_000
X = np.zeros((1, 4), dtype=np.float32)


def _request(name: str = "input", datatype: str = "FP32", output: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="classifier")
    request.inputs.add(name=name, datatype=datatype, shape=[1, 4])
    request.raw_input_contents.append(X.tobytes())
    if output:
        request.outputs.add(name=output)
    return request


CASES = {
    "input name": _request(name="n" * HUGE),
    "datatype": _request(datatype="D" * HUGE),
    "output name": _request(output="o" * HUGE),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_huge_name_gets_its_real_status_with_the_name_shortened(
    stub: pb_grpc.GRPCInferenceServiceStub, case: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(CASES[case])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details() or ""
    assert len(details.encode()) <= MAX_MESSAGE_BYTES
    assert f"... ({HUGE} chars)" in details


def test_a_stream_error_message_is_shortened_too(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    (answer,) = list(stub.ModelStreamInfer(iter([CASES["input name"]])))
    assert answer.error_message.startswith("input '" + "n" * SHOWN_CHARS + f"... ({HUGE} chars)'")


def test_shorten_keeps_short_text_and_escapes_what_does_not_print() -> None:
    assert shorten("classifier") == "classifier"
    assert shorten("x" * 65) == "x" * 64 + "... (65 chars)"
    assert shorten("a\nb") == "a\\nb"


def test_not_found_lists_at_most_ten_known_names() -> None:
    message = str(ModelNotFound("nope", known=[f"m{i:02}" for i in range(25)]))
    assert "m09" in message and "m10" not in message and "and 15 more" in message


def test_every_status_message_is_capped() -> None:
    assert message_for(InvalidInput("short")) == "short"
    long = message_for(InvalidInput("é" * 5000))  # 10,000 UTF-8 bytes
    assert len(long.encode()) <= MAX_MESSAGE_BYTES
    assert long.endswith("... (message cut: 10000 bytes)")
