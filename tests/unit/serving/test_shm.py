"""Shared-memory framing: every dtype the server serves survives a pack/unpack round trip; a
buffer's tmpfs pages are reserved when it is made, and one /dev/shm cannot hold is refused."""

from __future__ import annotations

import errno
import os

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from server.serving import shm
from server.serving.dtypes import DTYPES


def _round_trip(arrays: dict[str, npt.NDArray[np.generic]]) -> dict[str, npt.NDArray[np.generic]]:
    buf = memoryview(bytearray(shm.frame_size(arrays)))
    return shm.unpack(shm.pack(arrays, buf), buf)


def _equal(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.kind == "O":
        assert a.tolist() == b.tolist()
    else:
        np.testing.assert_array_equal(a, b)  # NaNs compare equal here


@pytest.mark.parametrize("row", DTYPES, ids=lambda r: r.oip)
def test_every_served_dtype_round_trips(row: object) -> None:
    dtype = row.numpy  # type: ignore[attr-defined]
    if dtype.kind == "O":
        # What onnxruntime takes and returns for strings; escapes stand for non-UTF-8 bytes.
        array = np.array([["abc", ""], ["héllo", "\ue0ff\x00z"]], dtype=object)
    else:
        array = np.arange(12).reshape(3, 4).astype(dtype)
    for shape in [array.shape, (0, 4), ()]:
        sample = array.reshape(-1)[: int(np.prod(shape))].reshape(shape)
        _equal(_round_trip({"t": sample})["t"], sample)


@given(
    st.lists(
        hnp.arrays(
            st.sampled_from([np.float32, np.float16, np.int64, np.uint8, np.bool_, np.float64]),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.text(max_size=8), max_size=6),
)
def test_several_arrays_round_trip_in_order_and_aligned(
    arrays: list[npt.NDArray[np.generic]], texts: list[str]
) -> None:
    named = {f"a{i}": a for i, a in enumerate(arrays)}
    named["text"] = np.array(texts, dtype=object)
    buf = memoryview(bytearray(shm.frame_size(named)))
    manifest = shm.pack(named, buf)
    assert [e.name for e in manifest] == list(named)
    assert all(e.offset % 64 == 0 for e in manifest)
    out = shm.unpack(manifest, buf)
    for name, array in named.items():
        _equal(out[name], array)


def test_views_share_the_buffer_and_copies_do_not() -> None:
    buf = memoryview(bytearray(256))
    manifest = shm.pack({"x": np.ones(4, np.float32)}, buf)
    view, copy = shm.unpack(manifest, buf, copy=False)["x"], shm.unpack(manifest, buf)["x"]
    shm.pack({"x": np.zeros(4, np.float32)}, buf)
    assert view.tolist() == [0.0] * 4 and copy.tolist() == [1.0] * 4


def test_arrays_that_do_not_fit_are_refused() -> None:
    arrays = {"x": np.ones(100, np.float64)}
    with pytest.raises(ValueError, match="do not fit"):
        shm.pack(arrays, memoryview(bytearray(shm.frame_size(arrays) - 1)))


def test_a_new_buffer_has_its_pages_reserved() -> None:
    buffer = shm.create(1 << 20)
    try:
        st = os.stat(shm.SHM_DIR / buffer.name)
        assert st.st_blocks * 512 >= 1 << 20  # not sparse: a write cannot meet a full tmpfs
    finally:
        buffer.close()
        buffer.unlink()


def test_a_buffer_bigger_than_dev_shm_is_refused_with_enospc() -> None:
    fs = os.statvfs(shm.SHM_DIR)
    with pytest.raises(OSError) as refused:
        shm.create(fs.f_blocks * fs.f_frsize + (1 << 30))
    assert refused.value.errno == errno.ENOSPC
