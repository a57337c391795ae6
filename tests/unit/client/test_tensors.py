"""The client's own tensor encoding (client/tensors.py) against the server's dtype table: the
same datatypes, the same bytes on the wire, and ClientError for what cannot be decoded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import tensors
from client.errors import ClientError
from server.serving import dtypes
from server.serving.dtypes import DTYPES

FIXED = [d for d in DTYPES if d.oip != "BYTES"]


def test_the_client_knows_exactly_the_server_datatypes_with_the_same_numpy_dtypes() -> None:
    assert {name: str(dtype) for name, dtype in tensors.DATATYPES.items()} == {
        d.oip: str(d.numpy) for d in DTYPES
    }


@pytest.mark.parametrize("row", FIXED, ids=lambda d: d.oip)
def test_encode_matches_the_server_byte_for_byte(row: dtypes.DType) -> None:
    array = np.arange(6).astype(row.numpy).reshape(2, 3)
    server_row, server_raw = dtypes.encode_raw(array)
    assert tensors.encode(array) == (server_row.oip, server_raw)


@pytest.mark.parametrize("row", FIXED, ids=lambda d: d.oip)
def test_decode_reads_what_the_server_encodes(row: dtypes.DType) -> None:
    array = np.arange(6).astype(row.numpy).reshape(3, 2)
    _, raw = dtypes.encode_raw(array)
    back = tensors.decode(row.oip, [3, 2], raw)
    assert back.dtype == row.numpy
    np.testing.assert_array_equal(back, array)


def test_bytes_tensors_round_trip_through_either_side() -> None:
    array = np.array([["a", "bc"], ["", "déf"]], dtype=object)
    datatype, raw = tensors.encode(array)
    assert (datatype, raw) == ("BYTES", dtypes.encode_raw(array)[1])
    back = tensors.decode("BYTES", [2, 2], raw)
    assert back.tolist() == [[b"a", b"bc"], [b"", "déf".encode()]]


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_bytes_framing_is_the_server_framing(items: list[bytes]) -> None:
    raw = tensors.encode_bytes(items)
    assert raw == dtypes.encode_bytes(items)
    assert tensors.decode_bytes(raw, len(items)) == items


def test_big_endian_arrays_go_on_the_wire_little_endian() -> None:
    array = np.array([1.5, -2.0], dtype=">f4")
    assert tensors.encode(array) == ("FP32", np.array([1.5, -2.0], dtype="<f4").tobytes())


def test_string_arrays_are_bytes() -> None:
    assert tensors.datatype_of(np.array(["x"])) == "BYTES"
    assert tensors.datatype_of(np.array([b"x"])) == "BYTES"


def test_a_dtype_without_a_datatype_is_invalid_argument() -> None:
    with pytest.raises(ClientError, match="complex128 has no Open Inference Protocol") as caught:
        tensors.encode(np.zeros(2, dtype=np.complex128))
    assert caught.value.code == "INVALID_ARGUMENT"


def test_an_unknown_datatype_from_the_server_is_a_client_error() -> None:
    with pytest.raises(ClientError, match="server sent unknown datatype BF16"):
        tensors.decode("BF16", [1], b"\0\0")
    with pytest.raises(ClientError, match="unknown datatype BF16"):
        tensors.numpy_dtype("BF16")


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\0" * 7, "7 bytes do not fit shape"),
        ("FP32", [3], b"\0" * 8, "8 bytes do not fit shape"),
        ("BYTES", [1], b"\x05\0\0", "truncated BYTES length prefix at byte 0"),
        ("BYTES", [1], b"\x05\0\0\0ab", "declares 5 bytes but only 2 remain"),
        ("BYTES", [2], b"\x01\0\0\0a", "shape needs 2 BYTES elements, got 1"),
    ],
)
def test_malformed_contents_are_client_errors(
    datatype: str, shape: list[int], raw: bytes, message: str
) -> None:
    with pytest.raises(ClientError, match=message):
        tensors.decode(datatype, shape, raw)
