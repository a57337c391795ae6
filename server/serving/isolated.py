"""A Runner whose session lives in a process of its own (`isolation = "process"`).

The version's onnxruntime session runs in a child process (server.serving.child) under its
own memory limit; tensors pass through a shared-memory buffer this side owns (one per version,
grown by doubling when a request or an answer needs more), so only manifests cross the socket.
One run at a time per version: the scheduler's slots queue the rest.

When the child dies (a native crash, `kill -9`, the kernel's OOM killer), the call in flight
and every call until a new child is ready raise VersionCrashed (UNAVAILABLE; a candidate's
request falls back to stable, see server.errors.Contained). A supervisor thread restarts the
child with backoff (server.serving.backoff). A run that breaks the memory budget raises
MemoryBudgetExceeded; the child lives on. A buffer that /dev/shm has no room for raises
SharedMemoryFull (server.serving.shm reserves a buffer's pages when it makes one).

`close()` (the version is unloaded or replaced) waits for a run in flight, ends the process
and frees the buffer; a restart under way then ends what it built, and later runs raise
VersionNotReady.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from server.errors import MemoryBudgetExceeded, SharedMemoryFull, VersionCrashed
from server.serving import shm
from server.serving.backoff import RestartBackoff
from server.serving.footprint import resident_bytes_of
from server.serving.runner import Arrays, retired
from server.serving.signature import Signature

__all__ = ["ChildSettings", "IsolatedRunner"]

log = logging.getLogger(__name__)

_FIRST_BUFFER = 1 << 20
#: How long closing waits for a run in flight before it ends the process anyway.
_CLOSE_WAIT_S = 5.0


@dataclass(frozen=True)
class ChildSettings:
    """How an isolated version's process runs its session."""

    intra_op_threads: int = 1
    memory_budget_mb: int = 2048
    """RLIMIT_DATA of the process, in MiB (0: no limit)."""
    start_timeout_s: float = 60.0
    """Longest a new process may take to load the model and say it is ready."""


class _Child:
    """One running process and its end of the socket."""

    def __init__(self, path: Path, settings: ChildSettings) -> None:
        ours, theirs = socket.socketpair()
        config = json.dumps(
            {
                "path": str(path),
                "intra_op_threads": settings.intra_op_threads,
                "memory_budget_mb": settings.memory_budget_mb,
            }
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.serving.child", str(theirs.fileno()), config],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C stops the server, which then
                # closes the socket; the child must not die first under a draining server.
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.started = time.monotonic()
        if not self.conn.poll(settings.start_timeout_s):
            self.kill()
            raise RuntimeError(
                f"its process did not load the model in {settings.start_timeout_s} s"
            )
        try:
            reply = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise RuntimeError(
                f"its process exited while loading ({_exit_text(self.process.wait())})"
            ) from None
        if reply[0] != "ready":
            self.kill()
            raise RuntimeError(reply[1])
        self.signature: Signature = reply[1]
        self.first_dims: tuple[object, ...] = reply[2]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.conn.close()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _view(buffer: shared_memory.SharedMemory) -> memoryview:
    view = buffer.buf
    assert view is not None, "a closed buffer"
    return view


class _Supervisor:
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
        self.child: _Child | None = _Child(path, settings)
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
            self.why = f"died ({_exit_text(code)})"
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
                child = _Child(self.path, self.settings)
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


class IsolatedRunner:
    """A Runner over a version's session in its own process (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        settings: ChildSettings = ChildSettings(),
        backoff: RestartBackoff | None = None,
    ) -> None:
        self._supervisor = _Supervisor(path, settings, backoff or RestartBackoff())
        child = self._supervisor.child
        assert child is not None
        self.signature: Signature = child.signature
        self.first_dims: tuple[object, ...] = child.first_dims
        #: Whether each run hands back what the arena grew by (set by the version's role).
        self.shrink_arena = False
        self._finalizer = weakref.finalize(self, self._supervisor.close)

    @property
    def pid(self) -> int | None:
        """The process serving this version now (None while it is restarted)."""
        return self._supervisor.pid

    @property
    def restarts(self) -> int:
        return self._supervisor.backoff.restarts

    #: Runs happen in another process: this thread's CPU clock does not see them.
    out_of_process = True

    @property
    def closed(self) -> bool:
        return self._supervisor.closed.is_set()

    def resident_bytes(self) -> int | None:
        """The resident memory of the process serving this version now (None while it is
        restarted, or where /proc cannot tell)."""
        pid = self.pid
        return None if pid is None else resident_bytes_of(pid)

    def run(self, outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]:
        return self._supervisor.run(outputs, feeds, self.shrink_arena)

    def close(self) -> None:
        """Stop the process and free the buffer (also when the runner is collected)."""
        self._finalizer()
