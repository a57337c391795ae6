"""Tensors on the wire, client side: Open Inference Protocol datatypes ⇄ numpy, and the raw
contents of each (little-endian; BYTES elements each prefixed by a 4-byte little-endian
length). The server keeps its own, larger table; tests/test_client_tensors.py holds the two
in agreement."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from client.errors import ClientError
from protos.framing import join_elements, split_elements

__all__ = [
    "DATATYPES",
    "datatype_of",
    "decode",
    "decode_bytes",
    "encode",
    "encode_bytes",
    "numpy_dtype",
]

#: Open Inference Protocol datatype → numpy dtype (BYTES: object arrays of `bytes`).
DATATYPES: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "UINT8": np.dtype(np.uint8),
        "UINT16": np.dtype(np.uint16),
        "UINT32": np.dtype(np.uint32),
        "UINT64": np.dtype(np.uint64),
        "INT8": np.dtype(np.int8),
        "INT16": np.dtype(np.int16),
        "INT32": np.dtype(np.int32),
        "INT64": np.dtype(np.int64),
        "FP16": np.dtype(np.float16),
        "FP32": np.dtype(np.float32),
        "FP64": np.dtype(np.float64),
        "BYTES": np.dtype(object),
    }
)
_BY_NUMPY = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of an Open Inference Protocol datatype name."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise ClientError("UNKNOWN", f"unknown datatype {datatype}")
    return dtype


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The Open Inference Protocol datatype of a numpy array (object and string arrays: BYTES)."""
    if array.dtype.kind in ("O", "U", "S"):
        return "BYTES"
    name = _BY_NUMPY.get(array.dtype.newbyteorder("="))
    if name is None:
        raise ClientError(
            "INVALID_ARGUMENT",
            f"numpy dtype {array.dtype} has no Open Inference Protocol datatype",
        )
    return name


def encode(array: npt.NDArray[Any]) -> tuple[str, bytes]:
    """numpy array → (datatype, raw contents)."""
    datatype = datatype_of(array)
    if datatype == "BYTES":
        return datatype, encode_bytes(v if isinstance(v, bytes) else str(v) for v in array.flat)
    little = np.ascontiguousarray(array, dtype=DATATYPES[datatype].newbyteorder("<"))
    return datatype, little.tobytes()


def decode(datatype: str, shape: Sequence[int], raw: bytes) -> npt.NDArray[Any]:
    """(datatype, shape, raw contents) → numpy array; BYTES elements come back as `bytes`."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise ClientError("UNKNOWN", f"server sent unknown datatype {datatype}")
    shape = tuple(shape)
    if datatype == "BYTES":
        count = int(np.prod(shape)) if shape else 1
        out = np.empty(count, dtype=object)
        out[:] = decode_bytes(raw, count)
        return out.reshape(shape)
    little = dtype.newbyteorder("<")
    if len(raw) % little.itemsize or len(raw) // little.itemsize != int(np.prod(shape)):
        raise ClientError(
            "UNKNOWN", f"{datatype} contents of {len(raw)} bytes do not fit shape {list(shape)}"
        )
    return np.frombuffer(raw, dtype=little).astype(dtype, copy=False).reshape(shape)


def encode_bytes(items: Iterable[bytes | str]) -> bytes:
    """Join BYTES elements, each prefixed by its 4-byte little-endian length."""
    return join_elements(i.encode() if isinstance(i, str) else bytes(i) for i in items)


def decode_bytes(raw: bytes, count: int) -> list[bytes]:
    """Split length-prefixed BYTES elements; there must be exactly `count` of them."""
    try:
        return split_elements(raw, count)
    except ValueError as exc:
        raise ClientError("UNKNOWN", str(exc)) from None
