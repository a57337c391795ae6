"""The dtype table: Open Inference Protocol, numpy, onnxruntime and Triton names in one row,
the raw (wire) form of values of each dtype, BYTES framing included, and the lossless mapping
between BYTES elements and the Python strings onnxruntime takes for string tensors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protos.framing import join_elements, split_elements
from server.errors import InvalidInput, InvalidTensor

__all__ = [
    "DTYPES",
    "DType",
    "by_oip",
    "bytes_to_text",
    "decode_bytes",
    "encode_bytes",
    "encode_raw",
    "for_array",
    "from_onnx_type",
    "text_to_bytes",
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
    try:
        return split_elements(raw, count)
    except ValueError as exc:
        raise InvalidTensor(name, str(exc)) from None


# BYTES elements are opaque (as in Triton), but onnxruntime's Python binding takes and returns
# string tensors as `str` only: it encodes each one to UTF-8 strictly (a lone surrogate, so
# Python's 'surrogateescape', is refused), turns a `bytes` object into its repr ("b'..'"), and
# fails on an output that is not UTF-8. So an element that is valid UTF-8 becomes its text, as
# the model expects; in one that is not, each byte that does not decode (always 0x80..0xFF)
# becomes U+10DC80..U+10DCFF: the code point 'surrogateescape' would give it, moved into the
# private use plane 16, which onnxruntime accepts. Output strings map back the same way, so any
# bytes a model passes through come back as they were sent. The price: a valid UTF-8 output
# holding one of those 128 private-use code points comes back as the raw byte it stands for.
_ESCAPE_SHIFT = 0x10_0000
_TO_PRIVATE = {0xDC00 + b: _ESCAPE_SHIFT + 0xDC00 + b for b in range(0x80, 0x100)}
_TO_SURROGATE = {v: k for k, v in _TO_PRIVATE.items()}
_ESCAPED = re.compile("[\U0010dc80-\U0010dcff]")


def bytes_to_text(item: bytes) -> str:
    """A BYTES element as the `str` onnxruntime takes: its text when it is UTF-8, else its
    text with each undecodable byte as a private-use code point (see `text_to_bytes`)."""
    try:
        return item.decode()
    except UnicodeDecodeError:
        return item.decode("utf-8", "surrogateescape").translate(_TO_PRIVATE)


def text_to_bytes(text: str) -> bytes:
    """The BYTES element a string stands for: the inverse of `bytes_to_text`."""
    if text.isascii() or _ESCAPED.search(text) is None:
        return text.encode()
    return text.translate(_TO_SURROGATE).encode("utf-8", "surrogateescape")


def encode_bytes(items: Sequence[bytes | str]) -> bytes:
    """Join BYTES elements with 4-byte little-endian length prefixes (str: `text_to_bytes`)."""
    return join_elements(text_to_bytes(i) if isinstance(i, str) else bytes(i) for i in items)


def encode_raw(array: npt.NDArray[np.generic]) -> tuple[DType, bytes]:
    """numpy array → (datatype row, raw contents)."""
    row = for_array(array)
    if row.oip == "BYTES":
        return row, encode_bytes([str(v) if not isinstance(v, bytes) else v for v in array.flat])
    return row, np.ascontiguousarray(array).tobytes()
