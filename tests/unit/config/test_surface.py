"""`server.config` stays the one import path for the configuration's public names."""

from __future__ import annotations

import importlib

import server.config


def test_every_public_name_is_importable_from_server_config() -> None:
    assert sorted(server.config.__all__) == sorted(
        [
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
    )
    for name in server.config.__all__:
        assert getattr(server.config, name) is not None


def test_each_name_is_defined_once_in_the_module_that_owns_it() -> None:
    """A re-export is the owner's object, not a copy: `except ConfigError` catches them all."""
    owners = {
        "ConfigError": "server.config.errors",
        "Config": "server.config.settings",
        "ModelConfig": "server.config.model",
        "WarmupConfig": "server.config.model",
        "load_config": "server.config.loading",
        "with_env_admin_token": "server.config.environment",
    }
    for name, module in owners.items():
        assert getattr(importlib.import_module(module), name) is getattr(server.config, name)
