"""The protobuf ⇄ numpy bridge on its own: dtype table, BYTES framing, validation messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server import dtypes, tensors
from server.dtypes import DTYPES, by_oip, decode_bytes, encode_bytes
from server.errors import InvalidInput, InvalidTensor
from server.signature import TensorSpec, shape_matches
from server.tensors import decode_raw


def test_table_has_no_duplicate_names() -> None:
    assert len({d.oip for d in DTYPES}) == len(DTYPES)
    assert len({d.onnx for d in DTYPES}) == len(DTYPES)
    assert len({d.triton for d in DTYPES}) == len(DTYPES)


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_bytes_framing_round_trips(items: list[bytes]) -> None:
    assert decode_bytes("t", encode_bytes(items), len(items)) == items


@pytest.mark.parametrize("row", [d for d in DTYPES if d.oip != "BYTES"], ids=lambda d: d.oip)
def test_raw_round_trip_every_fixed_size_dtype(row: dtypes.DType) -> None:
    array = np.arange(6).astype(row.numpy).reshape(2, 3)
    encoded_row, raw = dtypes.encode_raw(array)
    assert encoded_row is row
    back = decode_raw(TensorSpec("t", row, (None, 3)), [2, 3], raw)
    np.testing.assert_array_equal(back, array)


def test_bytes_round_trip_to_strings() -> None:
    spec = TensorSpec("text", by_oip("BYTES"), (None,))  # type: ignore[arg-type]
    out = decode_raw(spec, [2], encode_bytes(["a", "bé"]))
    assert out.tolist() == ["a", "bé"]


def test_shape_mismatch_messages() -> None:
    spec = TensorSpec("x", by_oip("FP32"), (None, 4))  # type: ignore[arg-type]
    assert shape_matches(spec, [3, 4]) is None
    assert "rank 2" in (shape_matches(spec, [4]) or "")
    assert "dimension 1 must be 4" in (shape_matches(spec, [1, 5]) or "")
    assert "non-negative" in (shape_matches(spec, [-2, 4]) or "")


def test_typed_contents_must_fit_the_dtype() -> None:
    spec = TensorSpec("x", by_oip("INT8"), (None,))  # type: ignore[arg-type]
    with pytest.raises(InvalidTensor, match="does not fit INT8"):
        tensors.decode_typed(spec, [1], "int_contents", [1000])
    fp16 = TensorSpec("h", by_oip("FP16"), (None,))  # type: ignore[arg-type]
    with pytest.raises(InvalidTensor, match="send it raw"):
        tensors.decode_typed(fp16, [1], None, [])


def test_invalid_utf8_bytes_are_rejected() -> None:
    spec = TensorSpec("text", by_oip("BYTES"), (None,))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="UTF-8"):
        decode_raw(spec, [1], encode_bytes([b"\xff\xfe"]))
