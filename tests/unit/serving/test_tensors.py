"""The protobuf ⇄ numpy bridge: request decoding, validation messages, the fast decode path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protos.inference import grpc_service_pb2 as pb
from server.errors import InvalidInput, InvalidTensor
from server.serving import tensors
from server.serving.dtypes import by_oip, encode_bytes
from server.serving.signature import Signature, TensorSpec
from server.serving.tensors import decode_raw


def test_bytes_round_trip_to_strings() -> None:
    spec = TensorSpec("text", by_oip("BYTES"), (None,))  # type: ignore[arg-type]
    out = decode_raw(spec, [2], encode_bytes(["a", "bé"]))
    assert out.tolist() == ["a", "bé"]


def test_typed_contents_must_fit_the_dtype() -> None:
    spec = TensorSpec("x", by_oip("INT8"), (None,))  # type: ignore[arg-type]
    with pytest.raises(InvalidTensor, match="does not fit INT8"):
        tensors.decode_typed(spec, [1], "int_contents", [1000])
    fp16 = TensorSpec("h", by_oip("FP16"), (None,))  # type: ignore[arg-type]
    with pytest.raises(InvalidTensor, match="send it raw"):
        tensors.decode_typed(fp16, [1], None, [])


# decode_inputs on requests that are right, or wrong in exactly one way: a right one decodes to
# its data, a wrong one is INVALID_ARGUMENT, never anything else.
_SIGNATURE = Signature(
    inputs=(
        TensorSpec("x", by_oip("FP32"), (None, 4)),  # type: ignore[arg-type]
        TensorSpec("ids", by_oip("INT64"), (2,)),  # type: ignore[arg-type]
        TensorSpec("m", by_oip("FP32"), (None, None)),  # type: ignore[arg-type]
    ),
    outputs=(),
)
_GOOD = {
    "x": ("FP32", [3, 4], np.float32),
    "ids": ("INT64", [2], np.int64),
    "m": ("FP32", [2, 3], np.float32),
}


_FAULTS = (
    "none",
    "datatype",
    "longer_rank",
    "shorter_rank",
    "negative",
    "negated",
    "fixed_dim",
    "short_data",
    "long_data",
    "typed_contents",
    "missing_raw",
    "duplicate",
    "duplicate_instead",
    "unknown",
    "missing",
)


@st.composite
def _requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """A well-formed request with at most one thing wrong, in one of its inputs."""
    fault = draw(st.sampled_from(_FAULTS))
    names = list(draw(st.permutations(list(_GOOD))))
    victim = draw(st.sampled_from(names))
    if fault == "duplicate":
        names.append(victim)
    elif fault == "duplicate_instead":  # as many inputs as the model has, one of them twice
        names[(names.index(victim) + 1) % len(names)] = victim
    elif fault == "unknown":
        names[names.index(victim)] = "nope"
    elif fault == "missing":
        names.remove(victim)
    request = pb.ModelInferRequest(model_name="m")
    for name in names:
        datatype, shape, numpy_type = _GOOD.get(name, ("FP32", [2], np.float32))
        hit = name == victim
        if hit and fault == "datatype":
            datatype = draw(st.sampled_from(["INT32", "BYTES", "FP64"]))
        if hit and fault == "longer_rank":
            shape = [*shape, 1]
        if hit and fault == "shorter_rank":
            shape = shape[1:]
        if hit and fault == "negative":
            shape = [-1, *shape[1:]]
        if hit and fault == "negated":  # as many elements as the good shape when the rank is even
            shape = [-d for d in shape]
        if hit and fault == "fixed_dim":
            shape = [d + 1 for d in shape]
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        data = np.arange(abs(int(np.prod(shape))), dtype=numpy_type).tobytes()
        if hit and fault == "short_data":
            data = data[:-1]
        if hit and fault == "long_data":
            data += b"\0"
        if hit and fault == "typed_contents":
            tensor.contents.fp32_contents.append(1.0)
        request.raw_input_contents.append(data)
    if fault == "missing_raw":
        del request.raw_input_contents[-1]
    return request


@given(_requests())
def test_decode_accepts_exactly_the_well_formed_requests(request: pb.ModelInferRequest) -> None:
    good = _is_good(request)
    try:
        feeds = tensors.decode_inputs(_SIGNATURE, request)
    except InvalidInput:
        assert not good
        return
    assert good
    for name, raw in zip([i.name for i in request.inputs], request.raw_input_contents, strict=True):
        assert feeds[name].tobytes() == raw
        assert list(feeds[name].shape) == list(
            request.inputs[[i.name for i in request.inputs].index(name)].shape
        )


def _is_good(request: pb.ModelInferRequest) -> bool:
    names = [i.name for i in request.inputs]
    if sorted(names) != sorted(_GOOD) or len(request.raw_input_contents) != len(names):
        return False
    for tensor, data in zip(request.inputs, request.raw_input_contents, strict=True):
        datatype, _, numpy_type = _GOOD[tensor.name]
        spec = _SIGNATURE.input(tensor.name)
        assert spec is not None
        fits = len(tensor.shape) == len(spec.shape) and all(
            d >= 0 and (want is None or want == d)
            for d, want in zip(tensor.shape, spec.shape, strict=True)
        )
        size = int(np.prod(tensor.shape)) * np.dtype(numpy_type).itemsize if fits else -1
        if tensor.datatype != datatype or not fits or len(data) != size:
            return False
        if tensor.HasField("contents"):
            return False
    return True


# The size bound: a request's input shapes together, zero dimensions counted as 1.
_TWO = Signature(
    inputs=(
        TensorSpec("a", by_oip("FP32"), (None, None)),  # type: ignore[arg-type]
        TensorSpec("b", by_oip("FP32"), (None, None)),  # type: ignore[arg-type]
    ),
    outputs=(),
)
_HUGE = 2**62


def _two(shape_a: list[int], shape_b: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    for name, shape in (("a", shape_a), ("b", shape_b)):
        request.inputs.add(name=name, datatype="FP32", shape=shape)
        request.raw_input_contents.append(bytes(4 * int(np.prod(shape))))
    return request


def test_the_size_bound_covers_the_inputs_together() -> None:
    feeds = tensors.decode_inputs(_TWO, _two([0, 512], [512, 0]), max_bytes=4096)
    assert set(feeds) == {"a", "b"}
    with pytest.raises(InvalidTensor) as info:
        tensors.decode_inputs(_TWO, _two([0, 512], [513, 0]), max_bytes=4096)
    assert info.value.tensor == "b"
    assert "2048 more in the inputs before it" in str(info.value)


def test_zero_dimensions_count_as_one_in_the_declared_size() -> None:
    spec = _TWO.inputs[0]
    assert tensors.declared_bytes(spec, [0, 512]) == tensors.declared_bytes(spec, [1, 512]) == 2048
    text = TensorSpec("t", by_oip("BYTES"), (None,))  # type: ignore[arg-type]
    assert tensors.declared_bytes(text, [0]) == tensors.BYTES_ELEMENT_COST


def test_without_a_bound_unrepresentable_shapes_are_still_invalid_input() -> None:
    with pytest.raises(InvalidTensor):
        tensors.decode_inputs(_TWO, _two([0, _HUGE], [1, 1]))
