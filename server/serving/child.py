"""The isolated process of one model version: `python -m server.serving.child FD SETTINGS`.

It limits its own memory (server.serving.budget), loads the version's onnxruntime session,
says it is ready, then serves runs the server sends over the socket FD until the server closes
it (or dies: the socket closes then too). Tensors come and go through a shared-memory buffer
the server owns (server.serving.shm); only manifests and short messages cross the socket.

Messages, server → child: ("run", outputs, manifest, buffer name, buffer size, shrink arena)
and, after a "grow" answer, ("resend", buffer name, buffer size). Child → server: ("ready",
signature, first dims) or ("load_failed", message) once; then per run ("ok", manifest),
("grow", bytes needed), ("oom", message) or ("failed", message).
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from server.serving import budget, shm
from server.serving.runner import OnnxRunner

__all__ = ["main"]

_SHM_DIR = shm.SHM_DIR


class _Buffers:
    """The server's buffers this process has mapped, by name (the server replaces a buffer by
    a bigger one under a new name; the old mapping is dropped then)."""

    def __init__(self) -> None:
        self._name = ""
        self._map: mmap.mmap | None = None

    def view(self, name: str, size: int) -> memoryview:
        if name != self._name or self._map is None or len(self._map) < size:
            if self._map is not None:
                self._map.close()
            fd = os.open(_SHM_DIR / name, os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self._name = name
        return memoryview(self._map)[:size]


def serve(conn: Connection, runner: OnnxRunner) -> None:
    buffers = _Buffers()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the socket or died: nothing left to serve
        conn.send(_run(conn, runner, buffers, message))


def _run(conn: Connection, runner: OnnxRunner, buffers: _Buffers, message: Any) -> Any:
    """One run; its answer. (Its own frame, so no view of a buffer outlives the run: a
    mapping with views cannot be replaced.)"""
    _, outputs, manifest, name, size, shrink = message
    feeds = shm.unpack(manifest, buffers.view(name, size), copy=False)
    runner.shrink_arena = shrink
    try:
        arrays = dict(zip(outputs, runner.run(outputs, feeds), strict=True))
    except Exception as exc:
        kind = "oom" if budget.is_out_of_memory(type(exc).__name__, str(exc)) else "failed"
        return (kind, f"{type(exc).__name__}: {exc}")
    del feeds
    need = shm.frame_size(arrays)
    if need > size:
        conn.send(("grow", need))
        reply = conn.recv()
        if reply[0] != "resend":  # the server could not grow its buffer: it says why
            return ("dropped", "")
        _, name, size = reply
    return ("ok", shm.pack(arrays, buffers.view(name, size)))


def main(argv: list[str]) -> int:
    fd, settings = int(argv[0]), json.loads(argv[1])
    conn = Connection(socket.socket(fileno=fd).detach())
    budget.apply_limit(int(settings["memory_budget_mb"]))
    try:
        runner = OnnxRunner(Path(settings["path"]), int(settings["intra_op_threads"]))
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if budget.is_out_of_memory(type(exc).__name__, str(exc)):
            limit = settings["memory_budget_mb"]
            why = f"the model does not fit its memory budget ({limit} MiB, memory_budget_mb)"
            message = f"{why}: {message}"
        conn.send(("load_failed", message))
        return 1
    reply: tuple[Any, ...] = ("ready", runner.signature, runner.first_dims)
    conn.send(reply)
    serve(conn, runner)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
