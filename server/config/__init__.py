"""The server's configuration: one typed, immutable object, loaded and validated once at start.

Sources, later wins: built-in defaults, a TOML file (`--config`), command-line flags.
Every key is documented on its field (settings, model) and in docs/config.md.

    errors        ConfigError
    model         ModelConfig, WarmupConfig: one model's `[models.<name>]` table
    settings      Config: the server-wide keys, and where the per-model tables hang
    keys          which keys are scalars, which tables; one value checked against its key
    model_tables  the `[models.<name>]` tables parsed and typed
    validation    the checks a loaded configuration passes
    loading       load_config: defaults, model directories' defaults, file, flags
    environment   tokens from the environment
"""

from __future__ import annotations

from server.config.environment import (
    ENV_TOKEN_NAME,
    with_env_admin_token,
    with_env_outcome_token,
)
from server.config.errors import ConfigError
from server.config.loading import load_config
from server.config.model import WARMUP_INPUTS, ModelConfig, WarmupConfig
from server.config.settings import Config, bundled_models_dir

__all__ = [
    "ENV_TOKEN_NAME",
    "WARMUP_INPUTS",
    "Config",
    "ConfigError",
    "ModelConfig",
    "WarmupConfig",
    "bundled_models_dir",
    "load_config",
    "with_env_admin_token",
    "with_env_outcome_token",
]
