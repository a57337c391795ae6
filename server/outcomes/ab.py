"""The A/B view of one model's outcomes: each outcome per version, with intervals, and the
candidate against stable (the difference and the relative lift, with their intervals)."""

from __future__ import annotations

from dataclasses import dataclass

from server.errors import ModelNotFound
from server.outcomes.merged import OutcomeSource
from server.outcomes.stats import Difference, Sample, difference, interval, lift
from server.rollout.router import RoutingTable, Stage, stage_of

__all__ = ["OutcomeComparison", "VersionOutcome", "compare"]


@dataclass(frozen=True)
class VersionOutcome:
    """One version's outcome: its randomized sample with a two-sided interval of the mean,
    and how many reports it got in all (randomized or not)."""

    version: str
    stage: Stage
    sample: Sample
    reported: int
    interval: tuple[float, float] | None


@dataclass(frozen=True)
class OutcomeComparison:
    """One outcome of one model: every version reported, and candidate - stable."""

    name: str
    kind: str
    versions: tuple[VersionOutcome, ...]
    stable: str
    candidate: str | None
    difference: Difference | None  # a two-sided interval at the confidence asked for
    lift: tuple[float, float, float] | None  # (lift, lower, upper), two-sided


def compare(
    windows: OutcomeSource,
    table: RoutingTable,
    model: str,
    confidence: float,
    window_s: float,
) -> list[OutcomeComparison]:
    """Every outcome of `model` reported in the last `window_s` seconds (in a fleet, by
    every live replica: fleet.outcomes)."""
    routing = table.models.get(model)
    if routing is None:
        raise ModelNotFound(model, known=list(table.models))
    candidate = routing.rollout.candidate if routing.rollout is not None else None
    out = []
    for name in windows.names(model):
        rows = []
        samples: dict[str, Sample] = {}
        for version in windows.versions(model, name):
            series = windows.series(model, version, name, window_s)
            samples[version] = series.randomized
            rows.append(
                VersionOutcome(
                    version,
                    stage_of(routing, version),
                    series.randomized,
                    series.reported,
                    interval(series.randomized, confidence),
                )
            )
        diff = lifted = None
        s, c = samples.get(routing.stable), samples.get(candidate or "")
        if s is not None and c is not None:
            diff = difference(s, c, 0.5 + confidence / 2)
            lifted = lift(s, c, confidence)
        kind = windows.kind(model, name) or "binary"
        out.append(
            OutcomeComparison(name, kind, tuple(rows), routing.stable, candidate, diff, lifted)
        )
    return out
