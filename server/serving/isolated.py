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

import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from server.serving.backoff import RestartBackoff
from server.serving.child_process import ChildSettings
from server.serving.footprint import resident_bytes_of
from server.serving.runner import Arrays
from server.serving.signature import Signature
from server.serving.supervisor import Supervisor

__all__ = ["ChildSettings", "IsolatedRunner"]

_DEFAULT_SETTINGS = ChildSettings()


class IsolatedRunner:
    """A Runner over a version's session in its own process (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        settings: ChildSettings = _DEFAULT_SETTINGS,
        backoff: RestartBackoff | None = None,
    ) -> None:
        self._supervisor = Supervisor(path, settings, backoff or RestartBackoff())
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
