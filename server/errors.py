"""The one transport-free exception tree of the server; the edge maps it to gRPC codes.

CanaryServeError
├── InvalidInput            a request that can never succeed as sent
│   └── InvalidTensor       one named input or output is malformed
├── NotFound
│   ├── ModelNotFound
│   └── ModelVersionNotFound
├── VersionNotReady         known, but not able to serve now (loading, failed, draining)
│   └── VersionCrashed      its isolated process died; it is being restarted   (Contained)
├── ShuttingDown            the server is draining before it stops
├── ModelNotReady           a known model none of whose versions can serve now, or any model
│                           while the server is still loading them
├── FailedPrecondition      valid request, wrong state (e.g. an invalid stage transition)
│   └── InvalidTransition
├── RevisionMismatch        compare-and-set lost: the caller's revision is not current
├── AlreadyExists
├── Unauthenticated
├── Overloaded              a bounded resource is full
│   ├── MemoryBudgetExceeded  a run needed more memory than the version's budget (Contained)
│   └── SharedMemoryFull      /dev/shm has no room for an isolated version's tensors (Contained)
├── StoreUnavailable        the shared state store cannot be reached (serving goes on)
├── ResponseTooLarge        an answer over the message limit
└── ModelFailed             the model itself raised while running a valid request

`Contained` marks the failures the server contains to one version: a candidate's request that
meets one is served by stable instead (like an overloaded candidate) and counted against it.

`STATUS_NAMES` is the one table from these errors to gRPC status names; it lives here, free of
grpc, so that both the edge (server.api.status) and telemetry can read it. Messages echo what a
caller sent (model, version and tensor names) through `shorten`, so no caller can make a
status message big enough to fail the call instead of explaining it.
"""

from __future__ import annotations

__all__ = [
    "SHOWN_CHARS",
    "STATUS_NAMES",
    "AlreadyExists",
    "CanaryServeError",
    "Contained",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidInput",
    "InvalidTensor",
    "InvalidTransition",
    "MemoryBudgetExceeded",
    "ModelFailed",
    "ModelNotFound",
    "ModelNotReady",
    "ModelVersionNotFound",
    "NotFound",
    "Overloaded",
    "ResponseTooLarge",
    "RevisionMismatch",
    "SharedMemoryFull",
    "ShuttingDown",
    "StoreUnavailable",
    "Unauthenticated",
    "VersionCrashed",
    "VersionNotReady",
    "shorten",
    "status_name",
]

#: How many characters of an untrusted string an error message echoes.
SHOWN_CHARS = 64
#: How many known names a NotFound message lists.
_SHOWN_NAMES = 10


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a message may echo it: at most `limit` characters, then "..." and its length.

    Characters that do not print (newlines, control characters) are shown escaped.
    """
    head = text[:limit]
    if not head.isprintable():
        head = head.encode("unicode_escape").decode("ascii")[:limit]
    return f"{head}... ({len(text)} chars)" if len(text) > limit else head


def _listed(names: list[str]) -> str:
    shown = ", ".join(shorten(n) for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


class CanaryServeError(Exception):
    """Base of every error the server reports to a caller on purpose."""


class InvalidInput(CanaryServeError):
    """The request is malformed; sending it again unchanged cannot succeed."""


class InvalidTensor(InvalidInput):
    """One tensor of a request is malformed: says which, what was expected and what came."""

    def __init__(self, tensor: str, problem: str) -> None:
        self.tensor = tensor
        self.problem = problem
        super().__init__(f"input '{shorten(tensor)}': {problem}")


class NotFound(CanaryServeError):
    """A named thing does not exist."""


class ModelNotFound(NotFound):
    def __init__(self, model: str, known: list[str] | None = None) -> None:
        self.model = model
        hint = f"; known models: {_listed(sorted(known))}" if known else ""
        super().__init__(f"model '{shorten(model)}' is not in the repository{hint}")


class ModelVersionNotFound(NotFound):
    def __init__(self, model: str, version: str, known: list[str] | None = None) -> None:
        self.model = model
        self.version = version
        hint = f"; versions: {_listed(known)}" if known else ""
        super().__init__(f"model '{shorten(model)}' has no version '{shorten(version)}'{hint}")


class VersionNotReady(CanaryServeError):
    """The version exists but cannot serve right now."""

    def __init__(self, model: str, version: str, state: str, reason: str = "") -> None:
        self.model = model
        self.version = version
        why = f": {reason}" if reason else ""
        super().__init__(f"model '{shorten(model)}' version '{shorten(version)}' is {state}{why}")


class Contained(Exception):
    """Marker of a failure contained to one version (its process, its memory budget): a
    candidate's request that meets one falls back to stable, as an overloaded one does."""


class VersionCrashed(Contained, VersionNotReady):
    """The version's isolated process died (or is restarting after it died)."""

    def __init__(self, model: str, version: str, why: str) -> None:
        super().__init__(model, version, "restarting", f"its isolated process {why}")


class ShuttingDown(CanaryServeError):
    """The server is draining before it stops: the call was not served; retry it (on another
    replica, or here once the server is back)."""

    def __init__(self) -> None:
        super().__init__("the server is shutting down; retry the call (it was not served)")


class ModelNotReady(CanaryServeError):
    """The model cannot serve now: the server is still loading models, or none of the model's
    versions is ready (the message carries each version's reason). Retrying may succeed."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"model '{model}' is UNAVAILABLE: {reason}")


class FailedPrecondition(CanaryServeError):
    """The request is valid but the current state does not allow it."""


class InvalidTransition(FailedPrecondition):
    """A rollout phase change that the stage machine does not allow."""

    def __init__(self, model: str, current: str, action: str, why: str) -> None:
        self.model = model
        self.current = current
        self.action = action
        super().__init__(f"cannot {action} model '{shorten(model)}' in phase {current}: {why}")


class RevisionMismatch(CanaryServeError):
    """Compare-and-set failed: someone changed the rollout since the caller read it."""

    def __init__(self, model: str, expected: int, actual: int) -> None:
        self.model = model
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"model '{shorten(model)}' rollout is at revision {actual}, not {expected}; "
            "read it again and retry"
        )


class AlreadyExists(CanaryServeError):
    """The thing to create exists already."""


class Unauthenticated(CanaryServeError):
    """Missing or wrong credentials."""


class Overloaded(CanaryServeError):
    """A bounded resource is full; retry later."""


class MemoryBudgetExceeded(Contained, Overloaded):
    """A run needed more memory than the version's budget allows; the version goes on serving
    requests that fit."""

    def __init__(self, model: str, version: str, budget_mb: int, detail: str) -> None:
        self.model, self.version, self.budget_mb = model, version, budget_mb
        super().__init__(
            f"model '{shorten(model)}' version '{shorten(version)}' ran out of its memory budget"
            f" ({budget_mb} MiB, memory_budget_mb) on this request and refused it; it serves"
            f" requests that fit (the runtime said: …{detail[-100:]})"
        )


class SharedMemoryFull(Contained, Overloaded):
    """The shared memory an isolated version's tensors travel through (/dev/shm, a tmpfs) has
    no room for this request's; the version goes on serving requests that fit."""

    def __init__(self, model: str, version: str, size: int) -> None:
        self.model, self.version, self.size = model, version, size
        super().__init__(
            f"model '{shorten(model)}' version '{shorten(version)}' could not reserve"
            f" {size / 2**20:.1f} MiB of shared memory (/dev/shm) for this request's tensors"
            " and refused it; give /dev/shm more room (a container's is 64 MiB unless"
            " mounted bigger, docs/deploy.md); it serves requests that fit"
        )


class StoreUnavailable(CanaryServeError):
    """The state store cannot be reached: writes fail, serving goes on from the last snapshot."""

    def __init__(self, store: str, cause: str) -> None:
        self.store = store
        super().__init__(
            f"state store {store} is unavailable ({cause}); serving continues on the last"
            " routing snapshot, rollout changes are refused until it is back"
        )


class ResponseTooLarge(CanaryServeError):
    """The answer to a valid request would exceed the message size limit; ask for less."""


class DeadlineExceeded(CanaryServeError):
    """The request waited longer than its limit (e.g. in a version's queue); retry later."""


class ModelFailed(CanaryServeError):
    """The runtime raised while running a request that passed validation."""

    def __init__(self, model: str, version: str, cause: BaseException) -> None:
        self.model = model
        self.version = version
        super().__init__(
            f"model '{shorten(model)}' version '{shorten(version)}' failed to run: {cause}"
        )


#: Error class -> gRPC status name; the first match wins. Anything else is INTERNAL.
STATUS_NAMES: tuple[tuple[type[CanaryServeError], str], ...] = (
    (InvalidInput, "INVALID_ARGUMENT"),
    (NotFound, "NOT_FOUND"),
    (VersionNotReady, "UNAVAILABLE"),
    (ModelNotReady, "UNAVAILABLE"),
    (ShuttingDown, "UNAVAILABLE"),
    (FailedPrecondition, "FAILED_PRECONDITION"),
    (RevisionMismatch, "ABORTED"),
    (AlreadyExists, "ALREADY_EXISTS"),
    (Unauthenticated, "UNAUTHENTICATED"),
    (Overloaded, "RESOURCE_EXHAUSTED"),
    (StoreUnavailable, "UNAVAILABLE"),
    (ResponseTooLarge, "RESOURCE_EXHAUSTED"),  # what gRPC answers for a message over its limit
    (DeadlineExceeded, "DEADLINE_EXCEEDED"),
    # The model's own failure: the server is fine, the version is not.
    (ModelFailed, "INTERNAL"),
)


def status_name(exc: BaseException) -> str:
    """The gRPC status name a caller sees for `exc` (INTERNAL for anything unexpected)."""
    if isinstance(exc, CanaryServeError):
        for kind, name in STATUS_NAMES:
            if isinstance(exc, kind):
                return name
    return "INTERNAL"
