"""This replica as a member of an etcd fleet: its lease-bound presence and what it publishes
(window summaries for promotion on the fleet's evidence, outcome windows for the outcome
gates and `ab`, its ready versions), and the
fleet-wide model repository; `app` builds one when the store is etcd, starts it after the
store's watch and closes it before the store."""

from __future__ import annotations

from server.fleet.outcomes import FleetOutcomes
from server.fleet.presence import Presence
from server.fleet.repository import FleetRepository
from server.fleet.store import EtcdStore
from server.fleet.telemetry import FleetTelemetry
from server.outcomes.windows import OutcomeWindows
from server.rollout.controller import RolloutController
from server.serving.registry import Registry
from server.serving.repository import ModelRepository
from server.shadow.executor import ShadowExecutor
from server.telemetry.windows import WindowProcessor

__all__ = ["FleetMember"]


class FleetMember:
    """Presence and fleet telemetry of one replica (module docstring)."""

    def __init__(
        self,
        store: EtcdStore,
        identity: str,
        rollouts: RolloutController,
        windows: WindowProcessor,
        shadow: ShadowExecutor,
        registry: Registry,
        repository: ModelRepository,
        *,
        ttl_s: int = 5,
        outcomes: OutcomeWindows | None = None,
    ) -> None:
        self.identity = identity
        self.presence = Presence(store.client, identity, ttl_s=ttl_s)

        def rollout_versions() -> dict[str, tuple[str, ...]]:
            return {
                s.model: (s.stable, s.candidate)
                for s in rollouts.states()
                if s.active and s.candidate is not None
            }

        self.telemetry = FleetTelemetry(
            store.client, store.root, identity, windows, shadow, rollout_versions
        )
        self.presence.add(self.telemetry.publication)
        self.outcomes = FleetOutcomes(
            store.client,
            store.root,
            identity,
            outcomes or OutcomeWindows(),
            lambda: list(rollout_versions()),
        )
        self.presence.add(self.outcomes.publication)
        self.repository = FleetRepository(store.client, store.root, identity, registry, rollouts)
        self.presence.add(self.repository.publication)
        repository.on_change(self.repository.record)
        registry.on_change(lambda model: self.presence.nudge())  # readiness changed: say so
        rollouts.admit_with(self.repository.admit)

    def start(self) -> None:
        self.presence.start()
        self.repository.start()

    def close(self) -> None:
        self.repository.close()
        self.presence.close()
