"""The server's version schedulers: one per (model, version, runner), made on first use, with
the limits of the version's current role, and forgotten when the version stops serving."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from server.clock import Clock
from server.rollout.router import Stage
from server.serving import batching
from server.serving.limits import Policy, Priority
from server.serving.runner import Runner
from server.serving.scheduler import VersionScheduler

__all__ = ["PolicyFor", "Schedulers"]

PolicyFor = Callable[[str], Policy]


class Schedulers:
    """One VersionScheduler per (model, version, runner), made on first use; its limits follow
    the version's role in the request that reaches it (stable, or any other: candidate)."""

    def __init__(self, policy_for: PolicyFor, clock: Clock = time.perf_counter) -> None:
        self._policy_for = policy_for
        self._clock = clock
        self._policies: dict[str, Policy] = {}
        self._by_version: dict[tuple[str, str], VersionScheduler] = {}
        self._lock = threading.Lock()

    def policy(self, model: str) -> Policy:
        policy = self._policies.get(model)
        if policy is None:
            policy = self._policies[model] = self._policy_for(model)
        return policy

    def get(self, model: str, version: str, runner: Runner, stage: Stage) -> VersionScheduler:
        """The scheduler of this version's current runner, with the limits of `stage`."""
        scheduler = self._by_version.get((model, version))
        if scheduler is None or scheduler.runner is not runner:
            with self._lock:
                scheduler = self._by_version.get((model, version))
                if scheduler is None or scheduler.runner is not runner:
                    policy = self.policy(model)
                    scheduler = VersionScheduler(
                        model,
                        version,
                        runner,
                        policy.limits(stage),
                        policy.max_batch_size,
                        self._clock,
                        policy.max_queue_delay_s,
                    )
                    if not getattr(runner, "closed", False):  # a late call on a retired one
                        self._by_version[(model, version)] = scheduler
        limits = self.policy(model).limits(stage)
        if scheduler.limits is not limits:
            scheduler.limits = limits  # a role change (promotion, rollback): new limits
        return scheduler

    def forget(self, model: str, version: str, runner: Runner) -> None:
        """Drop the version's scheduler when it serves `runner` (unloaded or replaced). Calls
        queued in it go on: their runs meet the closed runner and fail with its error."""
        with self._lock:
            scheduler = self._by_version.get((model, version))
            if scheduler is not None and scheduler.runner is runner:
                del self._by_version[(model, version)]

    def max_batch_size(self, model: str, runner: Runner) -> int:
        """Rows a run of this runner may merge under the model's policy (0: no batching)."""
        policy = self.policy(model)
        if policy.max_batch_size <= 1:
            return 0
        first_dims = getattr(runner, "first_dims", None)
        return policy.max_batch_size if batching.batchable(runner.signature, first_dims) else 0

    def pressure(self, model: str, stable: str) -> str | None:
        """Why shadow work must wait: the stable version has primary requests queued."""
        scheduler = self._by_version.get((model, stable))
        if scheduler is not None and scheduler.queued(Priority.PRIMARY):
            return "primary_queued"
        return None

    def find(self, model: str, version: str) -> VersionScheduler | None:
        """The version's scheduler, if it has served a request (for statistics)."""
        return self._by_version.get((model, version))

    def all(self) -> list[VersionScheduler]:
        return list(self._by_version.values())
