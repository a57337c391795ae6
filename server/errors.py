"""The one transport-free exception tree of the server; the edge maps it to gRPC codes.

CanaryServeError
├── InvalidInput            a request that can never succeed as sent
│   └── InvalidTensor       one named input or output is malformed
├── NotFound
│   ├── ModelNotFound
│   └── ModelVersionNotFound
├── VersionNotReady         known, but not able to serve now (loading, failed, draining)
├── FailedPrecondition      valid request, wrong state (e.g. an invalid stage transition)
│   └── InvalidTransition
├── RevisionMismatch        compare-and-set lost: the caller's revision is not current
├── AlreadyExists
├── Unauthenticated
├── Overloaded              a bounded resource is full
└── ModelFailed             the model itself raised while running a valid request

`STATUS_NAMES` is the one table from these errors to gRPC status names; it lives here, free of
grpc, so that both the edge (server.api.status) and telemetry can read it.
"""

from __future__ import annotations

__all__ = [
    "STATUS_NAMES",
    "AlreadyExists",
    "CanaryServeError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidInput",
    "InvalidTensor",
    "InvalidTransition",
    "ModelFailed",
    "ModelNotFound",
    "ModelVersionNotFound",
    "NotFound",
    "Overloaded",
    "RevisionMismatch",
    "Unauthenticated",
    "VersionNotReady",
    "status_name",
]


class CanaryServeError(Exception):
    """Base of every error the server reports to a caller on purpose."""


class InvalidInput(CanaryServeError):
    """The request is malformed; sending it again unchanged cannot succeed."""


class InvalidTensor(InvalidInput):
    """One tensor of a request is malformed: says which, what was expected and what came."""

    def __init__(self, tensor: str, problem: str) -> None:
        self.tensor = tensor
        self.problem = problem
        super().__init__(f"input '{tensor}': {problem}")


class NotFound(CanaryServeError):
    """A named thing does not exist."""


class ModelNotFound(NotFound):
    def __init__(self, model: str, known: list[str] | None = None) -> None:
        self.model = model
        hint = f"; known models: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"model '{model}' is not in the repository{hint}")


class ModelVersionNotFound(NotFound):
    def __init__(self, model: str, version: str, known: list[str] | None = None) -> None:
        self.model = model
        self.version = version
        hint = f"; versions: {', '.join(known)}" if known else ""
        super().__init__(f"model '{model}' has no version '{version}'{hint}")


class VersionNotReady(CanaryServeError):
    """The version exists but cannot serve right now."""

    def __init__(self, model: str, version: str, state: str, reason: str = "") -> None:
        self.model = model
        self.version = version
        why = f": {reason}" if reason else ""
        super().__init__(f"model '{model}' version '{version}' is {state}{why}")


class FailedPrecondition(CanaryServeError):
    """The request is valid but the current state does not allow it."""


class InvalidTransition(FailedPrecondition):
    """A rollout phase change that the stage machine does not allow."""

    def __init__(self, model: str, current: str, action: str, why: str) -> None:
        self.model = model
        self.current = current
        self.action = action
        super().__init__(f"cannot {action} model '{model}' in phase {current}: {why}")


class RevisionMismatch(CanaryServeError):
    """Compare-and-set failed: someone changed the rollout since the caller read it."""

    def __init__(self, model: str, expected: int, actual: int) -> None:
        self.model = model
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"model '{model}' rollout is at revision {actual}, not {expected}; "
            "read it again and retry"
        )


class AlreadyExists(CanaryServeError):
    """The thing to create exists already."""


class Unauthenticated(CanaryServeError):
    """Missing or wrong credentials."""


class Overloaded(CanaryServeError):
    """A bounded resource is full; retry later."""


class DeadlineExceeded(CanaryServeError):
    """The request waited longer than its limit (e.g. in a version's queue); retry later."""


class ModelFailed(CanaryServeError):
    """The runtime raised while running a request that passed validation."""

    def __init__(self, model: str, version: str, cause: BaseException) -> None:
        self.model = model
        self.version = version
        super().__init__(f"model '{model}' version '{version}' failed to run: {cause}")


#: Error class -> gRPC status name; the first match wins. Anything else is INTERNAL.
STATUS_NAMES: tuple[tuple[type[CanaryServeError], str], ...] = (
    (InvalidInput, "INVALID_ARGUMENT"),
    (NotFound, "NOT_FOUND"),
    (VersionNotReady, "UNAVAILABLE"),
    (FailedPrecondition, "FAILED_PRECONDITION"),
    (RevisionMismatch, "ABORTED"),
    (AlreadyExists, "ALREADY_EXISTS"),
    (Unauthenticated, "UNAUTHENTICATED"),
    (Overloaded, "RESOURCE_EXHAUSTED"),
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
