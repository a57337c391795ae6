"""The protobuf ⇄ numpy bridge of the request path: decode a request's inputs, encode outputs.

`decode_inputs` turns a ModelInferRequest into validated numpy arrays for one model version's
signature; `encode_outputs` writes numpy arrays into a ModelInferResponse. The dtype table is
in `server.serving.dtypes`, the signature in `server.serving.signature`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from protos.inference import grpc_service_pb2 as pb
from server.errors import InvalidInput, InvalidTensor, shorten
from server.serving.dtypes import bytes_to_text, decode_bytes, encode_raw
from server.serving.signature import Signature, TensorSpec, shape_matches

__all__ = [
    "BYTES_ELEMENT_COST",
    "declared_bytes",
    "decode_inputs",
    "decode_raw",
    "decode_typed",
    "encode_outputs",
    "requested_outputs",
]


#: What one BYTES element is counted as against max_message_bytes. On the wire an element
#: can be as small as its 4-byte length prefix (2 bytes as typed contents), but the server
#: holds each as Python and onnxruntime string objects, input and output: about 370 bytes
#: measured on the shouter. Counting 64 keeps a message of many empty elements from costing
#: more than a full-size numeric one (the fuzz test saw +215 MiB from a 1 MiB message before).
BYTES_ELEMENT_COST = 64


def declared_bytes(spec: TensorSpec, shape: Sequence[int]) -> int:
    """The bytes `shape` of `spec`'s datatype would hold with every zero dimension counted as 1.

    A zero dimension makes a tensor empty however large the others are, but a model's outputs
    may scale with any input dimension (a batch of 20,000,000 rows of nothing still asks for
    20,000,000 rows out), so the server bounds this figure, not the tensor's real size.
    """
    itemsize = BYTES_ELEMENT_COST if spec.dtype.oip == "BYTES" else spec.dtype.numpy.itemsize
    count = math.prod(shape) or math.prod([max(d, 1) for d in shape])
    return count * itemsize


def _reshape(
    spec: TensorSpec, array: npt.NDArray[np.generic], shape: Sequence[int]
) -> npt.NDArray[np.generic]:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # a shape numpy cannot represent at all
        raise InvalidTensor(spec.name, f"shape {list(shape)} is not usable: {exc}") from exc


def _object_array(
    spec: TensorSpec, items: Sequence[bytes], shape: Sequence[int]
) -> npt.NDArray[np.generic]:
    # onnxruntime takes string tensors as numpy object arrays of str; BYTES elements that are
    # not UTF-8 map losslessly (dtypes.bytes_to_text), so BYTES stay opaque as in Triton.
    out = np.empty(len(items), dtype=object)
    try:
        out[:] = [b.decode() for b in items]
    except UnicodeDecodeError:
        out[:] = [bytes_to_text(b) for b in items]
    return _reshape(spec, out, shape)


def decode_raw(spec: TensorSpec, shape: Sequence[int], raw: bytes) -> npt.NDArray[np.generic]:
    """Raw contents of one input → numpy array (zero-copy for fixed-size dtypes)."""
    count = math.prod(shape)
    if spec.dtype.oip == "BYTES":
        return _object_array(spec, decode_bytes(spec.name, raw, count), shape)
    expected = count * spec.dtype.numpy.itemsize
    if len(raw) != expected:
        raise InvalidTensor(
            spec.name,
            f"raw contents hold {len(raw)} bytes but shape {list(shape)} of "
            f"{spec.dtype.oip} needs {expected}",
        )
    return _reshape(spec, np.frombuffer(raw, dtype=spec.dtype.numpy), shape)


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
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidTensor(
            spec.name, f"shape {list(shape)} needs {count} values in {want}, got {len(values)}"
        )
    if spec.dtype.oip == "BYTES":
        return _object_array(spec, [bytes(v) for v in values], shape)  # type: ignore[call-overload]
    try:
        array = np.asarray(values, dtype=spec.dtype.numpy)
    except OverflowError as exc:
        raise InvalidTensor(spec.name, f"a value does not fit {spec.dtype.oip}: {exc}") from exc
    return _reshape(spec, array, shape)


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"'{s.name}'" for s in specs)


def decode_inputs(
    signature: Signature, request: pb.ModelInferRequest, max_bytes: int | None = None
) -> dict[str, npt.NDArray[np.generic]]:
    """Validate a request's inputs against `signature` and return them as numpy arrays.

    One rule at a time, so that an error names what is wrong: unknown, duplicate or missing
    inputs, datatype, shape, size, raw and typed contents mixed, malformed contents. Size:
    with `max_bytes`, the inputs' `declared_bytes` together must fit it, checked on each
    input's shape before its contents are looked at.
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but the request has "
            f"{len(request.inputs)} inputs; send one entry per input, in input order"
        )
    feeds: dict[str, npt.NDArray[np.generic]] = {}
    declared = 0
    for i, tensor in enumerate(request.inputs):
        # Each field read once: every protobuf attribute access builds a Python object.
        name, shape = tensor.name, tensor.shape
        spec = signature.input(name)
        if spec is None:
            raise InvalidTensor(
                name, f"the model has no such input; inputs are {_names(signature.inputs)}"
            )
        if name in feeds:
            raise InvalidTensor(name, "appears more than once in the request")
        if tensor.datatype != spec.dtype.oip:
            raise InvalidTensor(
                name, f"expected datatype {spec.dtype.oip}, got '{shorten(tensor.datatype)}'"
            )
        problem = shape_matches(spec, shape)
        if problem:
            raise InvalidTensor(name, problem)
        if max_bytes is not None:
            declared += declared_bytes(spec, shape)
            if declared > max_bytes:
                raise InvalidTensor(name, _too_large(spec, shape, declared, max_bytes))
        has_contents = tensor.HasField("contents")
        if raw:
            if has_contents and _typed_field(tensor.contents) is not None:
                raise InvalidTensor(
                    name,
                    "has typed contents while raw_input_contents is used; "
                    "send all inputs raw or all typed, not both",
                )
            feeds[name] = decode_raw(spec, shape, raw[i])
        else:
            field = _typed_field(tensor.contents) if has_contents else None
            values = getattr(tensor.contents, field) if field else ()
            feeds[name] = decode_typed(spec, shape, field, values)
    if len(feeds) != len(signature.inputs):
        missing = [s for s in signature.inputs if s.name not in feeds]
        raise InvalidInput(
            f"missing input(s) {_names(missing)}; the model needs {_names(signature.inputs)}"
        )
    return feeds


def _too_large(spec: TensorSpec, shape: Sequence[int], declared: int, limit: int) -> str:
    own = declared_bytes(spec, shape)
    others = f" ({declared - own} more in the inputs before it)" if declared > own else ""
    return (
        f"shape {list(shape)} of {spec.dtype.oip} is {own} bytes counting zero dimensions "
        f"as 1{others}, over the limit of {limit} bytes (max_message_bytes); the server "
        "bounds every dimension by the message limit, empty tensors included"
    )


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
        return signature.output_names
    known = set(signature.output_names)
    names: list[str] = []  # requested order, duplicates once
    for out in request.outputs:
        if out.name not in known:
            raise InvalidInput(
                f"requested output '{shorten(out.name)}' does not exist; outputs are "
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
    declared = signature.output_types if signature is not None else {}
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
