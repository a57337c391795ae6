"""Who may call what: the admin, inference and outcome authenticators a server checks tokens
with."""

from __future__ import annotations

from dataclasses import dataclass

from server.api.auth import Authenticator, ensure_token_file
from server.config import Config

__all__ = ["Access", "access"]


@dataclass(frozen=True)
class Access:
    """The authenticators of the three kinds of caller."""

    admin: Authenticator
    inference: Authenticator
    outcome: Authenticator


def access(config: Config) -> Access:
    """The configured tokens; with no admin token configured, the one generated into
    `<state_dir>/admin.token` on first start."""
    tokens = dict(config.admin_tokens) or {"generated": ensure_token_file(config.state_dir)}
    inference_tokens = {"inference": config.inference_token} if config.inference_token else {}
    return Access(
        admin=Authenticator(tokens, "admin"),
        inference=Authenticator(inference_tokens, "inference"),
        # Outcome reports steer outcome gates: a server that guards inference guards them too,
        # with the inference token, unless outcome tokens of their own are configured.
        outcome=Authenticator(dict(config.outcome_tokens) or inference_tokens, "outcome"),
    )
