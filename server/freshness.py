"""Which replicas' publications still count: each replica's latest, no older than a limit.

Fleet telemetry (server.telemetry.publication) and fleet outcomes (server.outcomes.publication)
both read what every live replica published under its lease and drop what is stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

__all__ = ["Published", "fresh"]


class Published(Protocol):
    """What a replica's publication says of itself."""

    @property
    def replica(self) -> str: ...

    @property
    def published_at(self) -> float: ...


P = TypeVar("P", bound=Published)


def fresh(publications: Iterable[P], now: float, max_age_s: float) -> list[P]:
    """The publications no older than `max_age_s`, one per replica (its latest), by replica."""
    latest: dict[str, P] = {}
    for p in publications:
        if now - p.published_at > max_age_s:
            continue
        seen = latest.get(p.replica)
        if seen is None or p.published_at > seen.published_at:
            latest[p.replica] = p
    return [latest[r] for r in sorted(latest)]
