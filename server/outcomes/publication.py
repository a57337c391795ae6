"""What a replica publishes of its outcome windows for one model, in pieces that rarely change.

A `ReplicaOutcomes` is one replica's outcome buckets of one model (server.outcomes.summary)
and when it published them. `split()` cuts it into a small head (identity, time, bucket
width: it changes every round) and one piece per `SLOT_S` seconds of buckets; a slot whose
time is over never changes again (a report lands in the bucket of the time it is reported),
so a publisher that puts only changed pieces writes the head and the current slot each
round. `join()` puts the pieces back together; `fresh()` keeps each replica's latest
publication no older than a bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from server.freshness import fresh
from server.outcomes.summary import OutcomeBucket, OutcomeBuckets, SeriesKey

__all__ = [
    "HEAD",
    "SLOT_S",
    "ReplicaOutcomes",
    "assemble",
    "fresh",
    "join",
    "parse_slot",
    "slot_of",
    "split",
]

#: The seconds of buckets in one piece (ten one-minute buckets).
SLOT_S = 600.0
HEAD = "head"


@dataclass(frozen=True)
class ReplicaOutcomes:
    """One replica's outcome windows of one model as published at `published_at`."""

    replica: str
    published_at: float
    bucket_s: float
    series: OutcomeBuckets = field(default_factory=dict)


def slot_of(start: float) -> int:
    """The slot (its start, whole seconds) a bucket starting at `start` belongs to."""
    return int(start // SLOT_S * SLOT_S)


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def split(p: ReplicaOutcomes) -> dict[str, str]:
    """The pieces of `p` by name: HEAD, and "s<slot>" per slot holding buckets (JSON)."""
    head = {"replica": p.replica, "published_at": p.published_at, "bucket_s": p.bucket_s}
    slots: dict[int, list[list[object]]] = {}
    for key, buckets in sorted(p.series.items()):
        by_slot: dict[int, list[list[float]]] = {}
        for start, b in sorted(buckets.items()):
            row = [start, b.n, b.total, b.total_sq, b.randomized_n, b.randomized_total]
            by_slot.setdefault(slot_of(start), []).append([*row, b.randomized_sq])
        for slot, rows in by_slot.items():
            slots.setdefault(slot, []).append([key.version, key.name, key.kind, rows])
    pieces = {HEAD: _dumps(head)}
    for slot, series in slots.items():
        pieces[f"s{slot}"] = _dumps(series)
    return pieces


def parse_slot(text: str | bytes) -> dict[SeriesKey, dict[float, OutcomeBucket]]:
    """One slot piece's series (a reader keeps them: a finished slot never changes)."""
    series: dict[SeriesKey, dict[float, OutcomeBucket]] = {}
    for version, outcome, kind, rows in json.loads(text):
        buckets = series.setdefault(SeriesKey(str(version), str(outcome), str(kind)), {})
        for start, n, total, sq, rn, rtotal, rsq in rows:
            buckets[float(start)] = OutcomeBucket(
                int(n), float(total), float(sq), int(rn), float(rtotal), float(rsq)
            )
    return series


def assemble(
    head: str | bytes, slots: Iterable[Mapping[SeriesKey, Mapping[float, OutcomeBucket]]]
) -> ReplicaOutcomes:
    """A publication from its head and its parsed slot pieces."""
    doc = json.loads(head)
    series: dict[SeriesKey, dict[float, OutcomeBucket]] = {}
    for slot in slots:
        for key, buckets in slot.items():
            series.setdefault(key, {}).update(buckets)
    return ReplicaOutcomes(
        replica=str(doc["replica"]),
        published_at=float(doc["published_at"]),
        bucket_s=float(doc["bucket_s"]),
        series=series,
    )


def join(pieces: Mapping[str, str | bytes]) -> ReplicaOutcomes | None:
    """`split()`'s pieces back together; None without a head (a half-written publication)."""
    if HEAD not in pieces:
        return None
    return assemble(pieces[HEAD], (parse_slot(t) for n, t in pieces.items() if n != HEAD))
