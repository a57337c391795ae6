"""Outcome reports: checked, joined to the version that served them, added to the windows.

A report names its request one of two ways. By request id: the version that answered that
request, from `ServedRequests` (this process's memory; unknown, evicted or expired ids are
NOT_FOUND). By routing key: the version the key routes to now, through the router and the
current routing snapshot (no request metadata, so cohort rules are not applied; after a
weight change, a key's earlier answer may have come from the other version). A report by
request id may carry the request's routing key as a fallback: when this process did not serve
the request (in a fleet, another replica did), it is joined by that key instead. Routing is
identical on every replica, so any replica joins a key as the one that served it would.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import FailedPrecondition, InvalidInput, NotFound, Overloaded, shorten
from server.outcomes.served import Served, ServedRequests
from server.outcomes.stats import BINARY, REAL, Kind
from server.outcomes.windows import OutcomeWindows
from server.rollout.router import RouteReason, RoutingTable, Stage, route

__all__ = [
    "JOIN_REQUEST_ID",
    "JOIN_ROUTING_KEY",
    "KINDS",
    "NAME_RULE",
    "Attribution",
    "OutcomeRecorder",
    "OutcomeReport",
]

KINDS = (BINARY, REAL)
NAME_RULE = "1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
JOIN_REQUEST_ID = "request_id"
JOIN_ROUTING_KEY = "routing_key"
#: Longest request id or routing key accepted (a caller's bytes kept in memory).
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class OutcomeReport:
    """One outcome as a backend reports it: exactly one of request_id and routing_key, and
    with request_id optionally `fallback_key`, the key to join by where the id is unknown."""

    model: str
    name: str
    kind: Kind
    value: float
    request_id: str = ""
    routing_key: str = ""
    fallback_key: str = ""


@dataclass(frozen=True)
class Attribution:
    """Where a report was counted: the version, its stage, how the report was joined, and
    whether it may gate a rollout (a randomized assignment)."""

    version: str
    stage: Stage
    reason: RouteReason
    joined_by: str
    randomized: bool


class OutcomeRecorder:
    """Joins outcome reports to versions and counts them in the outcome windows."""

    def __init__(
        self,
        served: ServedRequests,
        windows: OutcomeWindows,
        table: Callable[[], RoutingTable],
        *,
        max_names: int = 32,
    ) -> None:
        self.served = served
        self.windows = windows
        self._table = table
        self._max_names = max_names

    def report(self, r: OutcomeReport) -> Attribution:
        """Count `r` for the version that served it; raises InvalidInput (malformed),
        NotFound (no such request, model or version), FailedPrecondition (the outcome name
        has the other kind) or Overloaded (too many outcome names for the model)."""
        self._check(r)
        attribution = self._join(r)
        self._claim(r)
        self.windows.add(r.model, attribution.version, r.name, r.value, attribution.randomized)
        return attribution

    def _check(self, r: OutcomeReport) -> None:
        if _NAME.fullmatch(r.name) is None:
            what = f"'{shorten(r.name)}' is not a valid outcome name" if r.name else "missing"
            raise InvalidInput(f"outcome name {what}: use {NAME_RULE}")
        if r.kind not in KINDS:
            raise InvalidInput(f"outcome kind must be one of {', '.join(KINDS)}, got {r.kind!r}")
        if not math.isfinite(r.value):
            raise InvalidInput(f"outcome '{r.name}': the value must be a finite number")
        if r.kind == BINARY and r.value not in (0.0, 1.0):
            raise InvalidInput(f"outcome '{r.name}' is binary: its value is 0 or 1")
        if bool(r.request_id) == bool(r.routing_key):
            raise InvalidInput(
                "an outcome names its request by exactly one of request_id (the id the"
                " inference request carried) or routing_key (the key it was routed by)"
            )
        if r.fallback_key and not r.request_id:
            raise InvalidInput(
                "fallback_routing_key goes with request_id (it joins a report whose request"
                " this server process did not serve); alone, send routing_key"
            )
        texts = (
            ("request_id", r.request_id),
            ("routing_key", r.routing_key),
            ("fallback_routing_key", r.fallback_key),
        )
        for field, text in texts:
            if len(text) > MAX_ID_CHARS:
                raise InvalidInput(f"{field} is {len(text)} characters; at most {MAX_ID_CHARS}")

    def _join(self, r: OutcomeReport) -> Attribution:
        if r.request_id:
            served = self.served.lookup(r.request_id)
            if served is None and r.fallback_key:
                return self._by_key(r.model, r.fallback_key)
            if served is None:
                raise NotFound(self._unknown(r))
            if served.model != r.model:
                raise InvalidInput(
                    f"request '{shorten(r.request_id)}' was served by model"
                    f" '{served.model}', not '{shorten(r.model)}'"
                )
            return _attributed(served)
        return self._by_key(r.model, r.routing_key)

    def _by_key(self, model: str, key: str) -> Attribution:
        chosen = route(self._table(), model, key, {}, None)
        return Attribution(
            chosen.version,
            chosen.stage,
            chosen.reason,
            JOIN_ROUTING_KEY,
            chosen.reason in (RouteReason.HASH, RouteReason.NO_ROLLOUT),
        )

    def _unknown(self, r: OutcomeReport) -> str:
        s = self.served
        return (
            f"request '{shorten(r.request_id)}' of model '{shorten(r.model)}' is unknown here:"
            f" this server process keeps who served each request that carried an id for"
            f" {s.ttl_s:g} s, at most {s.max_entries} requests (outcome_join_ttl_seconds,"
            f" outcome_join_max_requests); the request went to another process or replica, is"
            f" older, or carried another id — report by routing_key instead, or send it as"
            f" fallback_routing_key beside the request id"
        )

    def _claim(self, r: OutcomeReport) -> None:
        kind = self.windows.claim(r.model, r.name, r.kind, self._max_names)
        if kind is None:
            raise Overloaded(
                f"model '{shorten(r.model)}' has {self._max_names} outcome names already,"
                f" the most this server keeps (outcome_max_names); '{shorten(r.name)}' is"
                " not counted: reuse a name"
            )
        if kind != r.kind:
            raise FailedPrecondition(
                f"outcome '{r.name}' of model '{shorten(r.model)}' is {kind} (so it was first"
                f" reported); report it as {kind}, or under another name"
            )


def _attributed(served: Served) -> Attribution:
    return Attribution(
        served.version, served.stage, served.reason, JOIN_REQUEST_ID, served.randomized
    )
