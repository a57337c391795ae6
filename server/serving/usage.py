"""What a version's runner can tell of its cost at scrape time: the sampled CPU of an
in-process session, the restarts of an isolated one's process."""

from __future__ import annotations

from server.serving.isolated import IsolatedRunner
from server.serving.roles import RoleRunner
from server.serving.runner import OnnxRunner

__all__ = ["cpu_seconds", "isolated_restarts"]


def _inner(runner: object) -> object:
    return runner.inner if isinstance(runner, RoleRunner) else runner


def cpu_seconds(runner: object) -> float | None:
    """The sampled CPU time of a version's in-process session (None for one in a process of
    its own, whose CPU is that process's)."""
    inner = _inner(runner)
    return inner.cpu.seconds() if isinstance(inner, OnnxRunner) else None


def isolated_restarts(runner: object) -> int | None:
    """How often the process of an isolated version was restarted (None when not isolated)."""
    inner = _inner(runner)
    return inner.restarts if isinstance(inner, IsolatedRunner) else None
