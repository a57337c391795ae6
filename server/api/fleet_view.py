"""The admin API's view of a fleet on etcd: per-replica readiness for GetRollout and the
fleet's shadow counts for GetShadowReport (docs/fleet.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.errors import StoreUnavailable
from server.intervals import wilson_interval
from server.rollout.state import RolloutState
from server.telemetry.merge import ShadowCounts

__all__ = ["FleetReadiness", "FleetShadow", "add_fleet_shadow", "replica_readiness"]

#: Every live replica's ready versions, replica -> model -> versions.
FleetReadiness: TypeAlias = Callable[[], Mapping[str, Mapping[str, list[str]]]]
#: A candidate's shadow counters summed over the replicas, and which replicas (None: none).
FleetShadow: TypeAlias = Callable[[str, str], tuple[ShadowCounts, tuple[str, ...]] | None]


def replica_readiness(
    state: RolloutState, readiness: FleetReadiness | None
) -> list[pb.ReplicaReadiness]:
    """Each live replica's ready versions of the model; empty for a server alone, or while
    the store is unreachable (reads answer from memory then)."""
    try:
        every = readiness() if readiness is not None else {}
    except StoreUnavailable:
        every = {}
    out = []
    for replica, models in sorted(every.items()):
        ready = models.get(state.model, [])
        out.append(
            pb.ReplicaReadiness(
                replica=replica,
                ready_versions=ready,
                candidate_ready=state.candidate is None or state.candidate in ready,
            )
        )
    return out


def add_fleet_shadow(
    response: pb.GetShadowReportResponse,
    doc: dict[str, Any],
    fleet: tuple[ShadowCounts, tuple[str, ...]],
) -> None:
    """The report's counts become the fleet's; the details in `doc` stay this replica's."""
    counts, replicas = fleet
    for name in ("sampled", "completed", "dropped", "errors", "timeouts", "disagreements"):
        setattr(response, name, getattr(counts, name))
    low, high = wilson_interval(counts.disagreements, counts.completed)
    response.disagreement_rate = counts.disagreements / max(counts.completed, 1)
    response.disagreement_rate_low, response.disagreement_rate_high = low, high
    response.replicas.extend(replicas)
    doc["fleet"] = {**vars(counts), "replicas": list(replicas)}
