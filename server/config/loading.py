"""Loading the configuration: built-in defaults, then a model directory's own defaults, then
the TOML file (`--config`), then command-line flags; later wins."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.config.errors import ConfigError
from server.config.keys import SCALARS, TABLES, coerce_key
from server.config.model_tables import model_tables
from server.config.settings import Config, bundled_models_dir
from server.config.validation import validate
from server.notify.settings import NotificationConfigError, parse_notifications

__all__ = ["MODEL_DEFAULTS_FILE", "load_config"]


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (None values are skipped)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        values.update(data)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in TABLES:
            continue
        spec = SCALARS.get(key)
        if spec is None:
            raise ConfigError(f"unknown config key '{key}'; known keys: {sorted(SCALARS)}")
        kwargs[key] = coerce_key(key, value, spec.type)
    models_dir = kwargs.get("models_dir") or bundled_models_dir()
    if "notifications" in values:
        try:
            kwargs["notifications"] = parse_notifications(values["notifications"])
        except NotificationConfigError as exc:
            raise ConfigError(str(exc)) from None
    configured = values.get("models", {})
    kwargs["models"] = model_tables(_merge(_repository_defaults(models_dir), configured))
    config = Config(**kwargs)
    validate(config)
    return config


#: A model directory may carry its own defaults: `<models_dir>/<model>/config.toml`, holding the
#: keys of a `[models.<name>]` table. The server's config overrides them key by key.
MODEL_DEFAULTS_FILE = "config.toml"


def _repository_defaults(models_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(Path(models_dir).glob(f"*/{MODEL_DEFAULTS_FILE}")):
        try:
            out[path.parent.name] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read model defaults {path}: {exc}") from exc
    return out


def _merge(defaults: dict[str, Any], configured: Any) -> Any:
    if not isinstance(configured, dict):
        return configured  # model_tables() reports the type error
    merged = {name: dict(table) for name, table in defaults.items()}
    for name, table in configured.items():
        if isinstance(table, dict) and isinstance(merged.get(name), dict):
            merged[name].update(table)
        else:
            merged[name] = table
    return merged
