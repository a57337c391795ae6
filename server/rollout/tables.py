"""The routing table a set of rollout states gives: `build_table`, pure; rollout.publisher
numbers and publishes what it builds."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from server.rollout.record import RolloutState
from server.rollout.router import CandidateRouting, ModelRouting, RoutingTable

__all__ = ["build_table"]


def build_table(
    states: Mapping[str, RolloutState],
    ready: Mapping[str, frozenset[str]],
    allow_pinning: bool,
    revision: int,
) -> RoutingTable:
    """The routing snapshot for `states`; a CandidateRouting only where a candidate is active."""
    models: dict[str, ModelRouting] = {}
    for name in sorted(states):
        s = states[name]
        rollout = None
        if s.candidate is not None:
            rollout = CandidateRouting(
                candidate=s.candidate,
                salt=s.salt,
                canary_ppm=s.canary_ppm,
                shadow_ppm=s.shadow_ppm,
                cohort_rules=s.cohort_rules,
            )
        here = ready.get(name, frozenset())
        models[name] = ModelRouting(
            stable=s.stable,
            rollout=rollout,
            ready=here,
            candidate_ready=s.candidate is None or s.candidate in here,
        )
    return RoutingTable(
        models=MappingProxyType(models), allow_pinning=allow_pinning, revision=revision
    )
