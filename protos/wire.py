"""Facts of the wire protocol that the server and its clients must agree on, defined once.

The server (`server/`) and the clients (`client/`) both import these; neither imports the
other. Only constants live here: no behaviour, no imports beyond the standard library.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADMIN_TOKEN_ENV",
    "ADMIN_TOKEN_FILE",
    "DEFAULT_PORT",
    "DEFAULT_STATE_DIR",
    "OUTCOME_TOKEN_ENV",
    "ROUTING_KEY_HEADER",
]

ROUTING_KEY_HEADER: Final = "x-routing-key"
"""gRPC metadata key of an inference call's routing key (gRPC lower-cases metadata keys)."""

ADMIN_TOKEN_ENV: Final = "CANARYSERVE_ADMIN_TOKEN"
"""Environment variable holding an admin token: the server accepts it (as the token named
"env"), the CLI sends it."""

OUTCOME_TOKEN_ENV: Final = "CANARYSERVE_OUTCOME_TOKEN"
"""Environment variable holding an Outcomes service token: the server accepts it (named
"env"), the CLI sends it."""

ADMIN_TOKEN_FILE: Final = "admin.token"
"""File in the state directory where the server writes the admin token it generates when none
is configured, and where the CLI looks for it."""

DEFAULT_STATE_DIR: Final = ".canaryserve"
"""The server's state directory when none is configured (relative to its working directory)."""

DEFAULT_PORT: Final = 8001
"""The gRPC port (inference and admin) the server listens on, and clients call, by default."""
