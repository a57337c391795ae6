"""TablePublisher: builds the routing table from the committed rollout states and the
registry's ready versions, numbers it, and publishes each new one.

It is the rollout controller's: every call runs under the controller's write lock, so tables
are built and published in commit order and their revisions only grow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from server.rollout.router import RoutingTable
from server.rollout.state import RolloutState, build_table

__all__ = ["Publish", "ReadyVersions", "TablePublisher"]

#: model -> its loaded-and-ready versions. Called under the controller's write lock, so it must
#: not block on a lock whose holder may call into the controller (e.g. refresh_ready()).
ReadyVersions: TypeAlias = Callable[[str], frozenset[str]]
Publish: TypeAlias = Callable[[RoutingTable], None]


class TablePublisher:
    """The routing table in force and the ready sets it was built from (module docstring)."""

    def __init__(
        self,
        ready_versions: ReadyVersions,
        publish: Publish,
        allow_pinning: bool,
        states: Mapping[str, RolloutState],
    ) -> None:
        """Builds the first table from `states` (no ready versions known yet) without
        publishing it: `refresh(states, force=True)` publishes."""
        self._ready_versions = ready_versions
        self._publish = publish
        self._allow_pinning = allow_pinning
        self._ready: dict[str, frozenset[str]] = {}
        self._revision = 0
        self.table = self._build(states)

    def refresh(self, states: Mapping[str, RolloutState], *, force: bool) -> bool:
        """Re-read every model's ready versions; build and publish a new table when they
        changed, or always when `force` (the states changed). True when it published."""
        ready = {model: self._ready_versions(model) for model in states}
        if not force and ready == self._ready:
            return False
        self._ready = ready
        self._publish_new(states)
        return True

    def committed(self, states: Mapping[str, RolloutState], model: str) -> None:
        """`model`'s state was committed: publish the table of `states` (reading the ready
        versions of a model seen for the first time; the others' wait for a refresh)."""
        if model not in self._ready:
            self._ready[model] = self._ready_versions(model)
        self._publish_new(states)

    def _publish_new(self, states: Mapping[str, RolloutState]) -> None:
        self.table = self._build(states)
        self._publish(self.table)

    def _build(self, states: Mapping[str, RolloutState]) -> RoutingTable:
        self._revision += 1
        return build_table(states, self._ready, self._allow_pinning, self._revision)
