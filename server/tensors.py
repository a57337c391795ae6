"""The only protobuf ⇄ numpy bridge: one dtype table, decode and encode in symmetric pairs.

`decode_inputs` turns a ModelInferRequest into validated numpy arrays for one model version's
signature; `encode_outputs` writes numpy arrays into a ModelInferResponse.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protos.inference import grpc_service_pb2 as pb
from server.errors import InvalidInput, InvalidTensor

__all__ = [
    "DTYPES",
    "DType",
    "Signature",
    "TensorSpec",
    "by_oip",
    "decode_bytes",
    "decode_inputs",
    "decode_raw",
    "decode_typed",
    "encode_bytes",
    "encode_outputs",
    "encode_raw",
    "for_array",
    "from_onnx_type",
    "requested_outputs",
    "shape_matches",
]


@dataclass(frozen=True)
class DType:
    """One row of the dtype table."""

    oip: str  # Open Inference Protocol datatype name
    numpy: np.dtype[np.generic]
    onnx: str  # onnxruntime type string
    triton: str  # Triton ModelConfig DataType name
    contents: str | None  # InferTensorContents field for typed contents; None: raw only


def _row(oip: str, np_type: str, onnx: str, triton: str, contents: str | None) -> DType:
    return DType(oip, np.dtype(np_type), f"tensor({onnx})", triton, contents)


DTYPES: tuple[DType, ...] = (
    _row("BOOL", "bool", "bool", "TYPE_BOOL", "bool_contents"),
    _row("UINT8", "uint8", "uint8", "TYPE_UINT8", "uint_contents"),
    _row("UINT16", "uint16", "uint16", "TYPE_UINT16", "uint_contents"),
    _row("UINT32", "uint32", "uint32", "TYPE_UINT32", "uint_contents"),
    _row("UINT64", "uint64", "uint64", "TYPE_UINT64", "uint64_contents"),
    _row("INT8", "int8", "int8", "TYPE_INT8", "int_contents"),
    _row("INT16", "int16", "int16", "TYPE_INT16", "int_contents"),
    _row("INT32", "int32", "int32", "TYPE_INT32", "int_contents"),
    _row("INT64", "int64", "int64", "TYPE_INT64", "int64_contents"),
    _row("FP16", "float16", "float16", "TYPE_FP16", None),
    _row("FP32", "float32", "float", "TYPE_FP32", "fp32_contents"),
    _row("FP64", "float64", "double", "TYPE_FP64", "fp64_contents"),
    _row("BYTES", "object", "string", "TYPE_STRING", "bytes_contents"),
)
_BY_OIP = {d.oip: d for d in DTYPES}
_BY_ONNX = {d.onnx: d for d in DTYPES}
_BY_NUMPY = {d.numpy: d for d in DTYPES if d.oip != "BYTES"}
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output; None in a shape: any size."""

    name: str
    dtype: DType
    shape: tuple[int | None, ...]

    @property
    def wire_shape(self) -> list[int]:
        """The shape as the protocol writes it: -1 for any size."""
        return [-1 if d is None else d for d in self.shape]


def by_oip(name: str) -> DType | None:
    return _BY_OIP.get(name)


def from_onnx_type(onnx_type: str) -> DType | None:
    """The table row for an onnxruntime type string, or None if unsupported."""
    return _BY_ONNX.get(onnx_type)


def for_array(array: npt.NDArray[np.generic]) -> DType:
    """The table row for a numpy array (object and string arrays are BYTES)."""
    if array.dtype.kind in ("O", "U", "S"):
        return _BY_OIP["BYTES"]
    row = _BY_NUMPY.get(array.dtype)
    if row is None:
        raise InvalidInput(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return row


def shape_matches(spec: TensorSpec, shape: Sequence[int]) -> str | None:
    """None when `shape` fits the spec, else what is wrong, phrased for the caller."""
    if len(shape) != len(spec.shape):
        return f"expected rank {len(spec.shape)} shape {spec.wire_shape}, got shape {list(shape)}"
    for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
        if got < 0:
            return f"dimension {axis} is {got}; dimensions must be non-negative"
        if want is not None and want != got:
            return (
                f"dimension {axis} must be {want} (model shape {spec.wire_shape}), "
                f"got shape {list(shape)}"
            )
    return None


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def decode_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """Split 4-byte little-endian length-prefixed BYTES elements; exactly `count` of them."""
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise InvalidTensor(name, f"truncated BYTES length prefix at byte {offset}")
        (size,) = _LEN.unpack_from(raw, offset)
        offset += 4
        if offset + size > end:
            raise InvalidTensor(
                name,
                f"BYTES element {len(items)} declares {size} bytes but only {end - offset} remain",
            )
        items.append(raw[offset : offset + size])
        offset += size
    if len(items) != count:
        raise InvalidTensor(name, f"shape needs {count} BYTES elements, got {len(items)}")
    return items


def encode_bytes(items: Sequence[bytes | str]) -> bytes:
    """Join BYTES elements with 4-byte little-endian length prefixes."""
    parts: list[bytes] = []
    for item in items:
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_LEN.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _object_array(items: Sequence[bytes], shape: Sequence[int]) -> npt.NDArray[np.object_]:
    # onnxruntime takes string tensors as numpy object arrays of str.
    out = np.empty(len(items), dtype=object)
    try:
        out[:] = [b.decode() for b in items]
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"BYTES element is not valid UTF-8 ({exc.reason})") from exc
    return out.reshape(shape)


def decode_raw(spec: TensorSpec, shape: Sequence[int], raw: bytes) -> npt.NDArray[np.generic]:
    """Raw contents of one input → numpy array (zero-copy for fixed-size dtypes)."""
    count = _count(shape)
    if spec.dtype.oip == "BYTES":
        return _object_array(decode_bytes(spec.name, raw, count), shape)
    expected = count * spec.dtype.numpy.itemsize
    if len(raw) != expected:
        raise InvalidTensor(
            spec.name,
            f"raw contents hold {len(raw)} bytes but shape {list(shape)} of "
            f"{spec.dtype.oip} needs {expected}",
        )
    return np.frombuffer(raw, dtype=spec.dtype.numpy).reshape(shape)


def decode_typed(
    spec: TensorSpec, shape: Sequence[int], field: str | None, values: Sequence[object]
) -> npt.NDArray[np.generic]:
    """Typed contents (`field` is the InferTensorContents field that was set) → numpy array."""
    want = spec.dtype.contents
    if want is None:
        raise InvalidTensor(spec.name, f"{spec.dtype.oip} has no typed contents; send it raw")
    if field != want:
        got = field or "no contents"
        raise InvalidTensor(spec.name, f"{spec.dtype.oip} goes in contents.{want}, got {got}")
    count = _count(shape)
    if len(values) != count:
        raise InvalidTensor(
            spec.name, f"shape {list(shape)} needs {count} values in {want}, got {len(values)}"
        )
    if spec.dtype.oip == "BYTES":
        return _object_array([bytes(v) for v in values], shape)  # type: ignore[call-overload]
    try:
        return np.asarray(values, dtype=spec.dtype.numpy).reshape(shape)
    except OverflowError as exc:
        raise InvalidTensor(spec.name, f"a value does not fit {spec.dtype.oip}: {exc}") from exc


def encode_raw(array: npt.NDArray[np.generic]) -> tuple[DType, bytes]:
    """numpy array → (datatype row, raw contents)."""
    row = for_array(array)
    if row.oip == "BYTES":
        return row, encode_bytes([str(v) if not isinstance(v, bytes) else v for v in array.flat])
    return row, np.ascontiguousarray(array).tobytes()


@dataclass(frozen=True)
class _RawPlan:
    """What the fast path needs to decode one fixed-size input sent raw."""

    oip: str
    numpy: np.dtype[np.generic]
    itemsize: int
    rank: int
    fixed: tuple[tuple[int, int], ...]  # (axis, size) of every dimension the model fixes


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of one model version."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    _by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _raw_plans: dict[str, _RawPlan] = field(init=False, repr=False, compare=False)
    _output_types: dict[str, DType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.inputs})
        object.__setattr__(self, "_output_names", tuple(s.name for s in self.outputs))
        plans = {
            s.name: _RawPlan(
                s.dtype.oip,
                s.dtype.numpy,
                s.dtype.numpy.itemsize,
                len(s.shape),
                tuple((axis, d) for axis, d in enumerate(s.shape) if d is not None),
            )
            for s in self.inputs
            if s.dtype.oip != "BYTES"
        }
        object.__setattr__(self, "_raw_plans", plans)
        declared = {s.name: s.dtype for s in self.outputs if s.dtype.oip != "BYTES"}
        object.__setattr__(self, "_output_types", declared)

    def input(self, name: str) -> TensorSpec | None:
        return self._by_name.get(name)

    def output_names(self) -> tuple[str, ...]:
        return self._output_names


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"'{s.name}'" for s in specs)


def decode_inputs(
    signature: Signature, request: pb.ModelInferRequest
) -> dict[str, npt.NDArray[np.generic]]:
    """Validate a request's inputs against `signature` and return them as numpy arrays.

    The common case (every input fixed-size, sent raw, well-formed) takes a fast path that
    checks the same rules with fewer protobuf reads; anything else, including every error,
    goes through `_decode_checked`, which names what is wrong.
    """
    raw = request.raw_input_contents
    inputs = request.inputs
    count = len(raw)
    if count == 0 or count != len(inputs) or count != len(signature.inputs):
        return _decode_checked(signature, request)
    plans = signature._raw_plans
    feeds: dict[str, npt.NDArray[np.generic]] = {}
    for i in range(count):  # indexing: iterating upb containers costs several times more
        tensor, data = inputs[i], raw[i]
        name = tensor.name
        plan = plans.get(name)
        if plan is None or name in feeds or tensor.datatype != plan.oip:
            return _decode_checked(signature, request)
        shape = tensor.shape[:]
        if len(shape) != plan.rank or (shape and min(shape) < 0) or tensor.HasField("contents"):
            return _decode_checked(signature, request)
        for axis, size in plan.fixed:
            if shape[axis] != size:
                return _decode_checked(signature, request)
        if len(data) != math.prod(shape) * plan.itemsize:
            return _decode_checked(signature, request)
        feeds[name] = np.frombuffer(data, dtype=plan.numpy).reshape(shape)
    return feeds


def _decode_checked(
    signature: Signature, request: pb.ModelInferRequest
) -> dict[str, npt.NDArray[np.generic]]:
    """decode_inputs, one rule at a time: the path every error takes, and BYTES and typed."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but the request has "
            f"{len(request.inputs)} inputs; send one entry per input, in input order"
        )
    feeds: dict[str, npt.NDArray[np.generic]] = {}
    for i, tensor in enumerate(request.inputs):
        spec = signature.input(tensor.name)
        if spec is None:
            raise InvalidTensor(
                tensor.name, f"the model has no such input; inputs are {_names(signature.inputs)}"
            )
        if tensor.name in feeds:
            raise InvalidTensor(tensor.name, "appears more than once in the request")
        if tensor.datatype != spec.dtype.oip:
            raise InvalidTensor(
                tensor.name, f"expected datatype {spec.dtype.oip}, got '{tensor.datatype}'"
            )
        problem = shape_matches(spec, tensor.shape)
        if problem:
            raise InvalidTensor(tensor.name, problem)
        if raw:
            if tensor.HasField("contents") and _typed_field(tensor.contents) is not None:
                raise InvalidTensor(
                    tensor.name,
                    "has typed contents while raw_input_contents is used; "
                    "send all inputs raw or all typed, not both",
                )
            feeds[tensor.name] = decode_raw(spec, tensor.shape, raw[i])
        else:
            field = _typed_field(tensor.contents) if tensor.HasField("contents") else None
            values = getattr(tensor.contents, field) if field else ()
            feeds[tensor.name] = decode_typed(spec, tensor.shape, field, values)
    if len(feeds) != len(signature.inputs):
        missing = [s for s in signature.inputs if s.name not in feeds]
        raise InvalidInput(
            f"missing input(s) {_names(missing)}; the model needs {_names(signature.inputs)}"
        )
    return feeds


_CONTENT_FIELDS = tuple(pb.InferTensorContents.DESCRIPTOR.fields_by_name)


def _typed_field(contents: pb.InferTensorContents) -> str | None:
    """The one InferTensorContents field in use (None if empty); more than one is an error."""
    used = [f for f in _CONTENT_FIELDS if len(getattr(contents, f))]
    if len(used) > 1:
        raise InvalidInput(f"typed contents use several fields ({', '.join(used)}); use one")
    return used[0] if used else None


def requested_outputs(signature: Signature, request: pb.ModelInferRequest) -> Sequence[str]:
    """Names of the outputs to compute: the requested subset, or all of them."""
    if not request.outputs:
        return signature._output_names
    known = set(signature.output_names())
    names: list[str] = []  # requested order, duplicates once
    for out in request.outputs:
        if out.name not in known:
            raise InvalidInput(
                f"requested output '{out.name}' does not exist; outputs are "
                f"{_names(signature.outputs)}"
            )
        if out.name not in names:
            names.append(out.name)
    return names


def encode_outputs(
    response: pb.ModelInferResponse,
    names: Sequence[str],
    arrays: Sequence[npt.NDArray[np.generic]],
    signature: Signature | None = None,
) -> None:
    """Append each output to `response` as raw contents, the way Triton answers.

    With the `signature` of the version that produced them, an output whose dtype is the one
    the model declares skips the dtype table (`tobytes` is C-order whatever the layout).
    """
    declared = signature._output_types if signature is not None else {}
    outputs, contents = response.outputs, response.raw_output_contents
    if len(names) != len(arrays):
        raise ValueError(f"{len(names)} output names for {len(arrays)} arrays")
    for i in range(len(names)):
        name, array = names[i], arrays[i]
        row = declared.get(name)
        if row is None or row.numpy != array.dtype:
            row, data = encode_raw(array)
        else:
            data = array.tobytes()
        out = outputs.add()
        out.name = name
        out.datatype = row.oip
        out.shape.extend(array.shape)
        contents.append(data)
