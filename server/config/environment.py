"""Tokens from the environment: `CANARYSERVE_ADMIN_TOKEN` and `CANARYSERVE_OUTCOME_TOKEN`, each
added to the configured tokens under the name "env"."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from protos.wire import ADMIN_TOKEN_ENV, OUTCOME_TOKEN_ENV
from server.config.errors import ConfigError
from server.config.settings import Config

__all__ = ["ENV_TOKEN_NAME", "with_env_admin_token", "with_env_outcome_token"]


#: The name (in the audit log) of the admin token taken from `CANARYSERVE_ADMIN_TOKEN`.
ENV_TOKEN_NAME = "env"


def with_env_admin_token(config: Config, environ: Mapping[str, str]) -> Config:
    """`config` plus the admin token in `environ[CANARYSERVE_ADMIN_TOKEN]`, when set, named
    "env" (the server accepts it; the CLI sends the same variable)."""
    token = environ.get(ADMIN_TOKEN_ENV, "")
    if not token:
        return config
    if not token.strip():
        raise ConfigError(f"{ADMIN_TOKEN_ENV} is set but blank")
    tokens = MappingProxyType({**config.admin_tokens, ENV_TOKEN_NAME: token})
    return dataclasses.replace(config, admin_tokens=tokens)


def with_env_outcome_token(config: Config, environ: Mapping[str, str]) -> Config:
    """`config` plus the outcome token in `environ[CANARYSERVE_OUTCOME_TOKEN]`, named "env"."""
    token = environ.get(OUTCOME_TOKEN_ENV, "")
    if not token:
        return config
    if not token.strip():
        raise ConfigError(f"{OUTCOME_TOKEN_ENV} is set but blank")
    tokens = MappingProxyType({**config.outcome_tokens, ENV_TOKEN_NAME: token})
    return dataclasses.replace(config, outcome_tokens=tokens)
