"""Pure routing: an immutable routing-table snapshot plus a request's key gives a Route.

No I/O, no clock, no randomness, no grpc. Writers build a new RoutingTable and swap one
reference; readers never lock. The hash and the decision order are specified in
docs/routing.md; protos/routing_vectors.json holds cross-language test vectors.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from server.errors import FailedPrecondition, InvalidInput, ModelNotFound, ModelVersionNotFound

__all__ = [
    "DOMAIN_CANARY",
    "DOMAIN_SHADOW",
    "PPM",
    "CandidateRouting",
    "CohortRule",
    "ModelRouting",
    "Route",
    "RouteReason",
    "RoutingTable",
    "Stage",
    "bucket",
    "position",
    "route",
    "stage_of",
]

#: Weights and sampling rates are integers in parts per million: 1 ppm = 0.0001 %.
PPM = 1_000_000

#: Hash domain of the canary split.
DOMAIN_CANARY = "canary"
#: Hash domain of shadow sampling: an independent draw, so the shadow sample is not the cohort.
DOMAIN_SHADOW = "shadow"

_sha256 = hashlib.sha256
_u64_be = struct.Struct(">Q").unpack_from  # first 8 bytes of a digest, unsigned big-endian
_TWO_POW_MINUS_53 = 2.0**-53


class Stage(enum.StrEnum):
    """Stage of a version as seen by the router (and returned to callers)."""

    STABLE = "stable"
    CANARY = "canary"
    SHADOW = "shadow"
    LOADED = "loaded"  # loaded and ready, but no rollout role (reachable only by pinning)


class RouteReason(enum.StrEnum):
    """Why the router chose the version it chose."""

    NO_ROLLOUT = "no_rollout"  # the model has no active candidate: stable answers
    HASH = "hash"  # the key's hash position decided
    COHORT = "cohort"  # a cohort rule on metadata decided
    PINNED = "pinned"  # the request named a version and pinning is allowed
    NO_KEY = "no_key"  # a rollout is active but the request carried no routing key
    # Set by the data plane, not the router: the candidate's queue refused the request (full,
    # or waited too long) and stable served it instead.
    CANDIDATE_OVERLOADED = "candidate_overloaded"
    # Also set by the data plane: the candidate's isolated process had died (and is being
    # restarted), or the run broke the candidate's memory budget; stable served the request.
    CANDIDATE_CRASHED = "candidate_crashed"
    CANDIDATE_OVER_BUDGET = "candidate_over_budget"
    # The rollout's candidate is not loaded and ready in this process (in a fleet: a replica
    # that joined late or failed to load it): stable serves every request, no shadow runs.
    CANDIDATE_NOT_READY = "candidate_not_ready"


@dataclass(frozen=True)
class CohortRule:
    """Requests whose metadata `key` equals `value` go to `target` before any hashing."""

    key: str
    value: str
    target: Stage  # Stage.CANARY (the candidate) or Stage.STABLE

    def __post_init__(self) -> None:
        if self.target not in (Stage.CANARY, Stage.STABLE):
            raise ValueError(f"cohort rule target must be canary or stable, not {self.target!r}")
        object.__setattr__(self, "target", Stage(self.target))  # "canary" -> Stage.CANARY


@dataclass(frozen=True)
class CandidateRouting:
    """The routing-relevant part of one model's active rollout."""

    candidate: str
    salt: str
    canary_ppm: int = 0  # share of keyed traffic served by the candidate
    shadow_ppm: int = 0  # share of stable-served traffic also run on the candidate
    cohort_rules: tuple[CohortRule, ...] = ()
    # Derived once per snapshot so the per-request path only hashes: the encoded
    # `domain 0x00 salt 0x00` prefixes of the hash input.
    _canary_prefix: bytes = field(init=False, repr=False, compare=False)
    _shadow_prefix: bytes = field(init=False, repr=False, compare=False)
    _cohort_route: Route = field(init=False, repr=False, compare=False)  # cohort -> candidate

    def __post_init__(self) -> None:
        for name in ("canary_ppm", "shadow_ppm"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= PPM:
                raise ValueError(f"{name} must be an int in [0, {PPM}], not {value!r}")
        object.__setattr__(self, "cohort_rules", tuple(self.cohort_rules))
        if "\x00" in self.salt:
            raise ValueError("salt must not contain NUL: it separates the hash input's parts")
        object.__setattr__(self, "_canary_prefix", _prefix(DOMAIN_CANARY, self.salt))
        object.__setattr__(self, "_shadow_prefix", _prefix(DOMAIN_SHADOW, self.salt))
        object.__setattr__(
            self, "_cohort_route", Route(self.candidate, Stage.CANARY, RouteReason.COHORT)
        )


@dataclass(frozen=True)
class ModelRouting:
    """Routing of one model: its stable version, an optional rollout, pinnable versions."""

    stable: str
    rollout: CandidateRouting | None = None
    ready: frozenset[str] = frozenset()  # versions loaded and ready (the pinnable set)
    candidate_ready: bool = True  # False: the rollout's candidate is not ready here
    # Precomputed answers that do not depend on the key (Route is immutable, so shared).
    _no_rollout: Route = field(init=False, repr=False, compare=False)
    _no_key: Route = field(init=False, repr=False, compare=False)
    _cohort_stable: Route = field(init=False, repr=False, compare=False)
    _not_ready: Route = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rollout = self.rollout
        if rollout is not None and rollout.candidate == self.stable:
            raise ValueError(f"rollout candidate '{rollout.candidate}' is the stable version")
        stable = self.stable
        object.__setattr__(self, "_no_rollout", Route(stable, Stage.STABLE, RouteReason.NO_ROLLOUT))
        object.__setattr__(self, "_no_key", Route(stable, Stage.STABLE, RouteReason.NO_KEY))
        object.__setattr__(self, "_cohort_stable", Route(stable, Stage.STABLE, RouteReason.COHORT))
        not_ready = Route(stable, Stage.STABLE, RouteReason.CANDIDATE_NOT_READY)
        object.__setattr__(self, "_not_ready", not_ready)


@dataclass(frozen=True)
class RoutingTable:
    """Immutable snapshot of every model's routing."""

    models: Mapping[str, ModelRouting] = field(default_factory=lambda: MappingProxyType({}))
    allow_pinning: bool = True
    revision: int = 0


@dataclass(frozen=True)
class Route:
    """The router's answer for one request."""

    version: str
    stage: Stage
    reason: RouteReason
    position: float | None = None  # the key's hash position in [0, 1), when hashed
    shadow_version: str | None = None  # also run this version off the request path


# --------------------------------------------------------------------------- the hash


def _prefix(domain: str, salt: str) -> bytes:
    """The constant part of the hash input: UTF-8(domain) 0x00 UTF-8(salt) 0x00."""
    return domain.encode() + b"\x00" + salt.encode() + b"\x00"


def _u64(prefix: bytes, key: str) -> int:
    """First 8 bytes of SHA-256(prefix || UTF-8(key)) as an unsigned big-endian integer."""
    try:
        data = prefix + key.encode()
    except UnicodeEncodeError as exc:  # lone surrogates: not representable in UTF-8
        raise InvalidInput(f"routing key is not valid Unicode text: {exc.reason}") from None
    u: int = _u64_be(_sha256(data).digest())[0]
    return u


def _bucket_of(u: int) -> int:
    """floor(u * PPM / 2**64), exactly, in [0, PPM - 1]."""
    return (u * PPM) >> 64


def _position_of(u: int) -> float:
    """u / 2**64 truncated to 53 bits: exact in IEEE-754 double, always < 1.0."""
    return (u >> 11) * _TWO_POW_MINUS_53


def position(salt: str, key: str, domain: str) -> float:
    """The key's hash position in [0, 1) for `salt` in `domain` (see docs/routing.md)."""
    return _position_of(_u64(_prefix(domain, salt), key))


def bucket(salt: str, key: str, domain: str) -> int:
    """The key's bucket in [0, 999_999]: in the range iff bucket < ppm (see docs/routing.md)."""
    return _bucket_of(_u64(_prefix(domain, salt), key))


# --------------------------------------------------------------------------- the router


def stage_of(routing: ModelRouting, version: str) -> Stage:
    """Role of `version` in its model's routing: stable, canary/shadow candidate, or loaded."""
    if version == routing.stable:
        return Stage.STABLE
    rollout = routing.rollout
    if rollout is not None and version == rollout.candidate:
        return Stage.CANARY if rollout.canary_ppm > 0 else Stage.SHADOW
    return Stage.LOADED


def route(
    table: RoutingTable,
    model: str,
    key: str | None,
    metadata: Mapping[str, str],
    pinned: str | None,
) -> Route:
    """Pick the version that serves one request (decision order in docs/routing.md).

    Raises ModelNotFound (unknown model), ModelVersionNotFound (pinned version not ready),
    FailedPrecondition (a pin while pinning is disabled) and InvalidInput (a key that is not
    valid Unicode text).
    """
    routing = table.models.get(model)
    if routing is None:
        raise ModelNotFound(model, known=list(table.models))

    if pinned:
        if not table.allow_pinning:
            raise FailedPrecondition(
                f"model '{model}': pinning versions is disabled on this server; omit model_version"
            )
        if pinned not in routing.ready:
            raise ModelVersionNotFound(model, pinned, known=sorted(routing.ready))
        return Route(pinned, stage_of(routing, pinned), RouteReason.PINNED)

    rollout = routing.rollout
    if rollout is None:
        return routing._no_rollout
    if not routing.candidate_ready:
        return routing._not_ready  # never route to a version this process cannot serve

    hit: Route | None = None
    for rule in rollout.cohort_rules:
        if metadata.get(rule.key) == rule.value:
            if rule.target is Stage.CANARY:
                return rollout._cohort_route
            hit = routing._cohort_stable
            break

    if not key:
        # Keyless: the caller samples shadows at random (the router has no randomness).
        return hit if hit is not None else routing._no_key

    if hit is None:
        u = _u64(rollout._canary_prefix, key)
        pos: float | None = _position_of(u)
        if _bucket_of(u) < rollout.canary_ppm:
            return Route(rollout.candidate, Stage.CANARY, RouteReason.HASH, pos)
        reason = RouteReason.HASH
    else:
        pos = None
        reason = RouteReason.COHORT

    shadow_ppm = rollout.shadow_ppm
    if shadow_ppm and _bucket_of(_u64(rollout._shadow_prefix, key)) < shadow_ppm:
        return Route(routing.stable, Stage.STABLE, reason, pos, rollout.candidate)
    if hit is not None:
        return hit
    return Route(routing.stable, Stage.STABLE, reason, pos)
