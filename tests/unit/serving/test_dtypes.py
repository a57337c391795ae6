"""The dtype table and the raw value forms: unique names, BYTES framing, raw round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.serving import dtypes
from server.serving.dtypes import DTYPES, decode_bytes, encode_bytes
from server.serving.signature import TensorSpec
from server.serving.tensors import decode_raw


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
