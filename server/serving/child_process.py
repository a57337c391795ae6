"""The server's end of an isolated version's process: its settings, starting it, ending it.

The process runs `server.serving.child`; `ChildProcess` starts it with one end of a socket
pair, waits for it to load the model and say it is ready, and kills it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from server.serving.signature import Signature

__all__ = ["ChildProcess", "ChildSettings", "exit_text"]


@dataclass(frozen=True)
class ChildSettings:
    """How an isolated version's process runs its session."""

    intra_op_threads: int = 1
    memory_budget_mb: int = 2048
    """RLIMIT_DATA of the process, in MiB (0: no limit)."""
    start_timeout_s: float = 60.0
    """Longest a new process may take to load the model and say it is ready."""


class ChildProcess:
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
                f"its process exited while loading ({exit_text(self.process.wait())})"
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


def exit_text(code: int) -> str:
    """How a process ended, from its return code (a negative one is the signal)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
