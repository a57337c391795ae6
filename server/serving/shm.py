"""Tensors through shared memory: numpy arrays packed into one buffer, described by a manifest.

An isolated version's process (server.serving.child) and the server exchange tensors through a
shared-memory buffer the server owns; only the small manifest travels over the pipe. Each
array's bytes start on a 64-byte boundary, so the receiver can view numeric arrays in place.
BYTES tensors (numpy object arrays of `str`, what onnxruntime takes and returns for strings)
are packed as 4-byte little-endian lengths followed by each element's UTF-8 text.

A buffer's pages are reserved when it is created (`create`): /dev/shm is a tmpfs (64 MiB in a
container unless mounted bigger), and a page written past its size is a SIGBUS that kills the
server; a reservation that does not fit fails at once with ENOSPC instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from multiprocessing import shared_memory
from pathlib import Path
from typing import NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["SHM_DIR", "Entry", "Manifest", "create", "frame_size", "pack", "unpack"]

#: Where POSIX shared memory lives on Linux (a tmpfs).
SHM_DIR = Path("/dev/shm")

_ALIGN = 64
_TEXT = "text"  # the manifest's dtype for object arrays of str


class Entry(NamedTuple):
    """Where one array lies in the buffer."""

    name: str
    dtype: str  # numpy dtype string, or "text" for an object array of str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


Manifest: TypeAlias = tuple[Entry, ...]
Arrays: TypeAlias = Mapping[str, npt.NDArray[np.generic]]


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _text_parts(array: npt.NDArray[np.generic]) -> list[bytes]:
    return [str(item).encode("utf-8", "surrogatepass") for item in array.reshape(-1)]


def _text_size(parts: list[bytes]) -> int:
    return 4 * len(parts) + sum(len(p) for p in parts)


def create(size: int) -> shared_memory.SharedMemory:
    """A new shared-memory buffer of `size` bytes whose tmpfs pages are reserved.

    Raises OSError (ENOSPC when /dev/shm has no room for it); no segment is left behind then.
    """
    buffer = shared_memory.SharedMemory(create=True, size=size)
    try:
        fd = os.open(SHM_DIR / buffer.name.lstrip("/"), os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, buffer.size)
        finally:
            os.close(fd)
    except OSError:
        buffer.close()
        buffer.unlink()
        raise
    return buffer


def frame_size(arrays: Arrays) -> int:
    """Bytes `pack` needs for these arrays."""
    total = 0
    for array in arrays.values():
        size = _text_size(_text_parts(array)) if array.dtype == object else array.nbytes
        total = _aligned(total) + size
    return total


def pack(arrays: Arrays, buf: memoryview) -> Manifest:
    """Copy `arrays` into `buf` (at least `frame_size(arrays)` bytes); their manifest.

    Raises ValueError when they do not fit.
    """
    entries: list[Entry] = []
    offset = 0
    for name, array in arrays.items():
        offset = _aligned(offset)
        if array.dtype == object:
            parts = _text_parts(array)
            size = _text_size(parts)
            _check_room(offset, size, len(buf))
            lengths = np.array([len(p) for p in parts], dtype="<u4")
            buf[offset : offset + lengths.nbytes] = lengths.tobytes()
            buf[offset + lengths.nbytes : offset + size] = b"".join(parts)
            entries.append(Entry(name, _TEXT, tuple(array.shape), offset, size))
        else:
            size = array.nbytes
            _check_room(offset, size, len(buf))
            target = np.ndarray(array.shape, array.dtype, buffer=buf, offset=offset)
            target[...] = array
            entries.append(Entry(name, array.dtype.str, tuple(array.shape), offset, size))
        offset += size
    return tuple(entries)


def unpack(
    manifest: Manifest, buf: memoryview, copy: bool = True
) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays `manifest` describes in `buf`: copies, or (copy=False) numeric arrays viewing
    the buffer, valid only while its contents stay put."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    for entry in manifest:
        if entry.dtype == _TEXT:
            out[entry.name] = _unpack_text(entry, buf)
            continue
        view: npt.NDArray[np.generic] = np.ndarray(
            entry.shape, np.dtype(entry.dtype), buffer=buf, offset=entry.offset
        )
        out[entry.name] = view.copy() if copy else view
    return out


def _unpack_text(entry: Entry, buf: memoryview) -> npt.NDArray[np.generic]:
    count = int(np.prod(entry.shape, dtype=np.int64))
    lengths = np.frombuffer(buf, dtype="<u4", count=count, offset=entry.offset)
    data = bytes(buf[entry.offset + 4 * count : entry.offset + entry.nbytes])
    items: list[str] = []
    at = 0
    for length in lengths.tolist():
        items.append(data[at : at + length].decode("utf-8", "surrogatepass"))
        at += length
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(entry.shape)


def _check_room(offset: int, size: int, capacity: int) -> None:
    if offset + size > capacity:
        raise ValueError(f"{offset + size} bytes do not fit a buffer of {capacity}")
