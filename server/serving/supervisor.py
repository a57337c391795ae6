"""The supervisor of an isolated version: its process, the tensors' buffer, the restarts.

One run at a time crosses to the process: the feeds are packed into a shared-memory buffer
this side owns (grown by doubling when a request or an answer needs more) and only manifests
cross the socket. A thread waits on the process and, when it dies, restarts it with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from server.errors import MemoryBudgetExceeded, SharedMemoryFull, VersionCrashed
from server.serving import shm
from server.serving.backoff import RestartBackoff
from server.serving.child_process import ChildProcess, ChildSettings, exit_text
from server.serving.runner import Arrays, retired

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

_FIRST_BUFFER = 1 << 20
#: How long closing waits for a run in flight before it ends the process anyway.
_CLOSE_WAIT_S = 5.0


def _view(buffer: shared_memory.SharedMemory) -> memoryview:
    view = buffer.buf
    assert view is not None, "a closed buffer"
    return view


class Supervisor:
    """The child of one version, its buffer, and the thread that restarts it."""

    def __init__(
        self,
        path: Path,
        settings: ChildSettings,
        backoff: RestartBackoff,
    ) -> None:
        self.path, self.settings, self.backoff = path, settings, backoff
        self.model, self.version = path.parent.parent.name, path.parent.name
        self.lock = threading.Lock()  # one run at a time
        self._state = threading.Lock()  # `child` against `closed`: a restart vs. close()
        self.child: ChildProcess | None = ChildProcess(path, settings)
        self.why = ""
        try:
            self.buffer = shm.create(_FIRST_BUFFER)
        except OSError as exc:
            self.child.kill()
            raise RuntimeError(f"no shared memory for its tensors ({exc.strerror})") from None
        self.closed = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name=f"isolated-{self.model}-{self.version}", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        while not self.closed.is_set():
            child = self.child
            if child is None:
                return
            code = child.process.wait()
            died = time.monotonic()
            if self.closed.is_set():
                return
            self.why = f"died ({exit_text(code)})"
            self.child = None
            with self.lock:  # after the run in flight, if any, has seen the socket close
                child.conn.close()
            log.warning(
                "model %s version %s: isolated process %d %s; restarting it",
                self.model,
                self.version,
                child.process.pid,
                self.why,
            )
            self._restart(self.backoff.delay(child.started, died))

    def _restart(self, delay: float) -> None:
        while not self.closed.wait(delay):
            try:
                child = ChildProcess(self.path, self.settings)
            except Exception as exc:
                self.why = f"could not be restarted ({exc}); retrying"
                log.warning("model %s version %s: %s", self.model, self.version, self.why)
                delay = self.backoff.delay(time.monotonic(), time.monotonic())
                continue
            with self._state:
                if not self.closed.is_set():
                    self.child = child
            if self.child is not child:  # closed while it was built: end it, not orphan it
                child.kill()
                return
            log.info("model %s version %s: isolated process restarted", self.model, self.version)
            return

    def buffer_of(self, size: int) -> shared_memory.SharedMemory:
        """The buffer, replaced by one of at least `size` bytes when it is smaller (call with
        the lock). Raises SharedMemoryFull, keeping the old buffer, when /dev/shm has no room."""
        if self.buffer.size < size:
            capacity = self.buffer.size
            while capacity < size:
                capacity *= 2
            try:
                bigger = shm.create(capacity)
            except OSError as exc:
                log.warning(
                    "model %s version %s: no %d bytes of shared memory: %s",
                    self.model,
                    self.version,
                    capacity,
                    exc.strerror,
                )
                raise SharedMemoryFull(self.model, self.version, capacity) from None
            old, self.buffer = self.buffer, bigger
            old.close()
            old.unlink()
        return self.buffer

    def run(
        self, outputs: Sequence[str], feeds: Arrays, shrink: bool
    ) -> list[npt.NDArray[np.generic]]:
        with self.lock:
            if self.closed.is_set():
                raise retired(self.path)
            child = self.child
            if child is None:
                raise VersionCrashed(self.model, self.version, self.why or "is not running")
            buffer = self.buffer_of(shm.frame_size(feeds))
            manifest = shm.pack(feeds, _view(buffer))
            try:
                child.conn.send(("run", list(outputs), manifest, buffer.name, buffer.size, shrink))
                reply: Any = child.conn.recv()
                if reply[0] == "grow":
                    try:
                        buffer = self.buffer_of(reply[1])
                    except SharedMemoryFull:
                        child.conn.send(("drop",))
                        child.conn.recv()
                        raise
                    child.conn.send(("resend", buffer.name, buffer.size))
                    reply = child.conn.recv()
            except (EOFError, OSError):
                raise VersionCrashed(self.model, self.version, "died during this run") from None
            kind = reply[0]
            if kind == "ok":
                arrays = shm.unpack(reply[1], _view(buffer))
                return [arrays[name] for name in outputs]
        if kind == "oom":
            budget = self.settings.memory_budget_mb
            raise MemoryBudgetExceeded(self.model, self.version, budget, reply[1])
        raise RuntimeError(reply[1])

    def close(self) -> None:
        with self._state:
            self.closed.set()
            child, self.child = self.child, None
        ours = self.lock.acquire(timeout=_CLOSE_WAIT_S)  # let a run in flight finish
        try:
            if child is not None:
                child.kill()
            if ours:  # else a hung run still views the buffer: it is freed at exit
                self.buffer.close()
                self.buffer.unlink()
        finally:
            if ours:
                self.lock.release()

    @property
    def pid(self) -> int | None:
        child = self.child
        return None if child is None else child.process.pid
