"""What a replica publishes of its windows for one model, in pieces that rarely change.

A `ReplicaTelemetry` is one replica's telemetry of one model: which replica, when, the span
of time its buckets cover, the buckets of each version (telemetry.merge), its latest error
traces and the shadow counters of each candidate. `split()` cuts it into a small head
(identity, time, traces, shadow counters: it changes every round) and one piece per
`SLOT_S`-second slot of buckets; a finished slot never changes again, so a publisher that
puts only changed pieces writes the head and the current slot each round, not the whole
horizon. `join()` puts the pieces back together; `fresh()` drops publications older than a
bound: a replica that stopped publishing (hung, or cut off from the store) no longer speaks
for the fleet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.freshness import fresh
from server.telemetry.merge import BucketCounts, ShadowCounts, VersionBuckets

__all__ = ["HEAD", "SLOT_S", "ReplicaTelemetry", "fresh", "join", "slot_of", "split"]

#: The seconds of buckets in one piece.
SLOT_S = 10.0
#: The name of the head piece; slot pieces are named "s<slot start>".
HEAD = "head"


@dataclass(frozen=True)
class ReplicaTelemetry:
    """What one replica published for one model at `published_at` (module docstring)."""

    replica: str
    published_at: float
    bucket_s: float
    span_start: float  # the earliest bucket start it holds; its buckets end at published_at
    versions: Mapping[str, VersionBuckets] = field(default_factory=dict)
    traces: Mapping[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)
    shadow: Mapping[str, ShadowCounts] = field(default_factory=dict)  # by candidate


def slot_of(start: float) -> int:
    """The slot (its start, whole seconds) a bucket starting at `start` belongs to."""
    return int(start // SLOT_S * SLOT_S)


def _rows(buckets: VersionBuckets) -> list[list[Any]]:
    return [
        [s, b.requests, b.errors, dict(b.by_code), sorted(b.latency.items())]
        for s, b in sorted(buckets.items())
    ]


def _buckets(rows: Iterable[list[Any]]) -> dict[float, BucketCounts]:
    return {
        float(s): BucketCounts(
            int(n), int(e), {str(k): int(c) for k, c in codes.items()},
            {int(slot): int(c) for slot, c in latency},
        )
        for s, n, e, codes, latency in rows
    }  # fmt: skip


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def split(p: ReplicaTelemetry) -> dict[str, str]:
    """The pieces of `p` by name: HEAD, and "s<slot>" per slot holding buckets (JSON)."""
    head = {
        "replica": p.replica,
        "published_at": p.published_at,
        "bucket_s": p.bucket_s,
        "span_start": p.span_start,
        "traces": {v: [list(t) for t in ts] for v, ts in p.traces.items()},
        "shadow": {c: vars(s) for c, s in p.shadow.items()},
    }
    slots: dict[int, dict[str, dict[float, BucketCounts]]] = {}
    for version, buckets in p.versions.items():
        for start, counts in buckets.items():
            slots.setdefault(slot_of(start), {}).setdefault(version, {})[start] = counts
    pieces = {HEAD: _dumps(head)}
    for slot, versions in slots.items():
        pieces[f"s{slot}"] = _dumps({v: _rows(b) for v, b in versions.items()})
    return pieces


def join(pieces: Mapping[str, str | bytes]) -> ReplicaTelemetry | None:
    """`split()`'s pieces back together; None without a head (a half-written publication)."""
    if HEAD not in pieces:
        return None
    head = json.loads(pieces[HEAD])
    versions: dict[str, dict[float, BucketCounts]] = {}
    for name, text in pieces.items():
        if name != HEAD:
            for version, rows in json.loads(text).items():
                versions.setdefault(version, {}).update(_buckets(rows))
    return ReplicaTelemetry(
        replica=str(head["replica"]),
        published_at=float(head["published_at"]),
        bucket_s=float(head["bucket_s"]),
        span_start=float(head["span_start"]),
        versions=versions,
        traces={v: tuple((float(a), str(t)) for a, t in ts) for v, ts in head["traces"].items()},
        shadow={c: ShadowCounts(**s) for c, s in head["shadow"].items()},
    )
