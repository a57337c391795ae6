"""BYTES tensors are opaque, as in Triton: any bytes in, the same bytes out, valid UTF-8 or not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.serving.dtypes import bytes_to_text, decode_bytes, encode_bytes, text_to_bytes
from tests.conftest import make_repository, start_app

#: Not UTF-8: a lone continuation byte, 0xff, an encoded surrogate, a truncated sequence, an
#: overlong "/" — beside valid text, NUL and the empty string.
ELEMENTS = [
    b"\xff\xfe",
    b"\x80",
    b"caf\xc3\xa9",
    b"\xed\xa0\x80",
    b"ok\xe2\x82",
    b"\xc0\xaf",
    b"a\x00b",
    b"",
    "\U0001f600 \u00e9".encode(),
]


def _echo_model(path: Path) -> None:
    """Identity on a string tensor: what goes in comes out."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True)
    path.write_bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("bytes")
    repository = make_repository(tmp / "with-echo")
    _echo_model(repository / "echo" / "1" / "model.onnx")
    app = start_app(tmp, models_dir=repository)
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def stub(server: App) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _raw_request(model: str, name: str, items: list[bytes]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype="BYTES", shape=[len(items)])
    request.raw_input_contents.append(encode_bytes(items))
    return request


def _output(response: pb.ModelInferResponse) -> list[bytes]:
    (out,) = response.outputs
    assert out.datatype == "BYTES"
    return decode_bytes(out.name, response.raw_output_contents[0], int(out.shape[0]))


def test_arbitrary_bytes_round_trip_raw_and_typed(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert _output(stub.ModelInfer(_raw_request("echo", "text", ELEMENTS))) == ELEMENTS
    typed = pb.ModelInferRequest(model_name="echo")
    typed.inputs.add(name="text", datatype="BYTES", shape=[len(ELEMENTS)])
    typed.inputs[0].contents.bytes_contents.extend(ELEMENTS)
    assert _output(stub.ModelInfer(typed)) == ELEMENTS


def test_the_model_sees_the_text_around_bytes_that_are_not_utf8(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    """The bundled shouter upper-cases ASCII: valid text is what the model reads, and the bytes
    it cannot read come back as they were sent."""
    items = [b"abc\xff", b"\xc3\xa9t\xc3\xa9", b"x\x80y"]
    response = stub.ModelInfer(_raw_request("shouter", "text", items))
    assert _output(response) == [b"ABC\xff", "éTé".encode(), b"X\x80Y"]


@given(st.lists(st.binary(max_size=24), max_size=8))
def test_the_text_mapping_is_lossless_and_leaves_utf8_alone(items: list[bytes]) -> None:
    for item in items:
        text = bytes_to_text(item)
        assert text_to_bytes(text) == item
        text.encode("utf-8")  # onnxruntime takes it: no lone surrogates
        with contextlib.suppress(UnicodeDecodeError):  # valid UTF-8: the model reads its text
            assert text == item.decode("utf-8")
