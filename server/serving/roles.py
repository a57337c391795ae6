"""Session settings by role: how a version runs while it is stable, and while it is a candidate.

A session's settings are fixed when onnxruntime builds it, before the version has a role; this
module builds each version's runner for the role it has at load (the configured or current
stable version is stable, any other version a candidate) and follows later role changes:

* settings a run can change (arena shrinkage, a run option) switch at once;
* settings a session is built with (onnxruntime threads, process isolation) differ between the
  roles only when configured so (the defaults are equal): then a role change builds a new
  runner for the new role in the background and swaps it in when it is ready; runs go on
  meanwhile on the old one, which is closed when the last run in flight on it is done.

`close()` (the version is unloaded or replaced) closes the runner serving now; a rebuild
under way then closes what it built instead of swapping it in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from server.serving.isolated import ChildSettings, IsolatedRunner
from server.serving.lowpriority import low_priority_threads
from server.serving.runner import Arrays, OnnxRunner
from server.serving.signature import Signature

__all__ = [
    "ISOLATION",
    "Placement",
    "PlacementFor",
    "RoleRunner",
    "RunnerBuilder",
    "StableOf",
    "follow_roles",
]

log = logging.getLogger(__name__)

#: Values of the `isolation` and `candidate_isolation` keys.
ISOLATION = ("none", "process")


@dataclass(frozen=True)
class Placement:
    """Where and how the versions of one model run, by role (docs/config.md has the keys)."""

    isolation: str = "none"
    """"process": every version of the model runs in a process of its own."""
    candidate_isolation: str = "none"
    """"process": a version runs in a process of its own while it is a candidate."""
    memory_budget_mb: int = 2048
    """Memory limit of an isolated version's process, in MiB (0: none)."""
    intra_op_threads: int = 1
    """onnxruntime threads per run of the stable version."""
    candidate_intra_op_threads: int = 1
    """onnxruntime threads per run of a candidate."""
    candidate_arena_shrinkage: bool = True
    """A candidate's runs hand back what onnxruntime's arena grew by."""
    candidate_priority: str = "normal"
    """OS priority of a candidate's in-process runs (server.serving.lowpriority)."""

    def build_key(self, stable: bool) -> tuple[bool, int]:
        """What a session is built with in this role: (isolated, threads)."""
        isolated = self.isolation == "process" or (
            not stable and self.candidate_isolation == "process"
        )
        return isolated, self.intra_op_threads if stable else self.candidate_intra_op_threads


PlacementFor: TypeAlias = Callable[[str], Placement]
#: Builds a version's runner for a role: (path, placement, stable) -> runner.
Build: TypeAlias = Callable[[Path, Placement, bool], "_Inner"]
#: The model's stable version as the server sees it now, or None.
StableOf: TypeAlias = Callable[[str], str | None]


class _Inner(Protocol):
    signature: Signature
    first_dims: tuple[object, ...]
    shrink_arena: bool

    def run(self, outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]: ...


_Run: TypeAlias = Callable[[Sequence[str], Arrays], list[npt.NDArray[np.generic]]]


def _build(path: Path, placement: Placement, stable: bool) -> _Inner:
    isolated, threads = placement.build_key(stable)
    runner: _Inner
    if isolated:
        runner = IsolatedRunner(path, ChildSettings(threads, placement.memory_budget_mb))
    else:
        runner = OnnxRunner(path, threads)
    runner.shrink_arena = not stable and placement.candidate_arena_shrinkage
    return runner


def _close(runner: _Inner) -> None:
    close = getattr(runner, "close", None)
    if close is not None:
        close()


class RoleRunner:
    """A version's runner, built for its role and rebuilt when a role change needs it."""

    def __init__(
        self, path: Path, placement: Placement, stable: bool, build: Build | None = None
    ) -> None:
        self.path, self.placement = path, placement
        self._stable = stable
        self._build = build or _build
        self._inner = self._build(path, placement, stable)
        self._built = placement.build_key(stable)
        self.signature: Signature = self._inner.signature
        self.first_dims: tuple[object, ...] = self._inner.first_dims
        #: Runs go straight to the serving runner's own `run` (no frame of this class on the
        #: request path) or, for a candidate at a lower priority, to that run on a low-priority
        #: thread; rebound when a role change swaps the runner or the priority.
        self.run: _Run = self._bound(self._inner, stable)
        self._rebuild = threading.Lock()
        self._state = threading.Lock()  # the swap of `_inner` against close()
        self._closed = False

    @property
    def inner(self) -> object:
        """The runner serving now (OnnxRunner or IsolatedRunner)."""
        return self._inner

    @property
    def stable(self) -> bool:
        return self._stable

    @property
    def closed(self) -> bool:
        return self._closed

    def resident_bytes(self) -> int | None:
        """The resident memory of the version's own process; None when it runs in the server's."""
        inner = self._inner
        return inner.resident_bytes() if isinstance(inner, IsolatedRunner) else None

    @property
    def out_of_process(self) -> bool:
        """Whether runs happen in another process (the calling thread's CPU does not see them)."""
        return isinstance(self._inner, IsolatedRunner)

    @property
    def off_thread(self) -> bool:
        """Whether runs happen on another thread or process than the caller's."""
        return getattr(self.run, "low_priority", False) or self.out_of_process

    def _bound(self, inner: _Inner, stable: bool) -> _Run:
        priority = self.placement.candidate_priority
        if stable or priority == "normal" or isinstance(inner, IsolatedRunner):
            return inner.run
        call, run = low_priority_threads(priority).call, inner.run

        def low_priority(outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]:
            return call(run, outputs, feeds)

        low_priority.low_priority = True  # type: ignore[attr-defined]
        return low_priority

    def set_role(self, stable: bool) -> None:
        """Follow a role change (a promotion, a rollback); returns at once."""
        if stable == self._stable:
            return
        self._stable = stable
        if self.placement.build_key(stable) == self._built:
            self._inner.shrink_arena = not stable and self.placement.candidate_arena_shrinkage
            self.run = self._bound(self._inner, stable)
            return
        threading.Thread(target=self._swap, name=f"rebuild-{self.path}", daemon=True).start()

    def _swap(self) -> None:
        with self._rebuild:  # one rebuild at a time; the last role wins
            if self._closed:
                return
            stable = self._stable
            key = self.placement.build_key(stable)
            if key == self._built:
                self._inner.shrink_arena = not stable and self.placement.candidate_arena_shrinkage
                self.run = self._bound(self._inner, stable)
                return
            try:
                new = self._build(self.path, self.placement, stable)
            except Exception:
                log.exception(
                    "rebuilding %s for its new role failed; keeping its session", self.path
                )
                return
            # The old runner is not closed here: runs in flight on it finish, and it closes
            # itself (an isolated one ends its process) when the last of them lets it go.
            with self._state:
                if not self._closed:
                    self.run = self._bound(new, stable)
                    self._inner, self._built = new, key
            if self._inner is not new:  # closed while it was built: it never serves
                _close(new)
                return
            log.info("%s: rebuilt as %s", self.path, "stable" if stable else "candidate")
        if self._stable != stable:  # the role changed back while it was built: follow it
            threading.Thread(target=self._swap, name=f"rebuild-{self.path}", daemon=True).start()

    def close(self) -> None:
        """Close the runner serving now (idempotent); a rebuild under way closes its own."""
        with self._state:
            self._closed = True
            inner = self._inner
        _close(inner)


class RunnerBuilder:
    """The registry's runner factory: each version built for the role it has at load."""

    def __init__(self, placement_for: PlacementFor, stable_of: StableOf) -> None:
        self._placement_for = placement_for
        self._stable_of = stable_of

    def __call__(self, path: Path) -> RoleRunner:
        model, version = path.parent.parent.name, path.parent.name
        stable = self._stable_of(model) == version
        return RoleRunner(path, self._placement_for(model), stable)


def follow_roles(versions: Iterable[tuple[str, str, object]], stable_of: StableOf) -> None:
    """Tell each (model, version, runner) whether it is its model's stable version now."""
    for model, version, runner in versions:
        if isinstance(runner, RoleRunner):
            stable = stable_of(model)
            if stable is not None:
                runner.set_role(version == stable)
