"""The dtype table: Open Inference Protocol, numpy, onnxruntime and Triton names in one row,
and the raw (wire) form of values of each dtype, BYTES framing included."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.errors import InvalidInput, InvalidTensor

__all__ = [
    "DTYPES",
    "DType",
    "by_oip",
    "decode_bytes",
    "encode_bytes",
    "encode_raw",
    "for_array",
    "from_onnx_type",
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


def encode_raw(array: npt.NDArray[np.generic]) -> tuple[DType, bytes]:
    """numpy array → (datatype row, raw contents)."""
    row = for_array(array)
    if row.oip == "BYTES":
        return row, encode_bytes([str(v) if not isinstance(v, bytes) else v for v in array.flat])
    return row, np.ascontiguousarray(array).tobytes()
