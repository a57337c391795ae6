"""Tensor specs: a declared shape against a requested one, with the message that says why not."""

from __future__ import annotations

from server.serving.dtypes import by_oip
from server.serving.signature import TensorSpec, shape_matches


def test_shape_mismatch_messages() -> None:
    """A shape that does not fit says which rank or dimension is wrong."""
    spec = TensorSpec("x", by_oip("FP32"), (None, 4))  # type: ignore[arg-type]
    assert shape_matches(spec, [3, 4]) is None
    assert "rank 2" in (shape_matches(spec, [4]) or "")
    assert "dimension 1 must be 4" in (shape_matches(spec, [1, 5]) or "")
    assert "non-negative" in (shape_matches(spec, [-2, 4]) or "")
