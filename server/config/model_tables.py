"""The `[models.<name>]` tables, checked and typed: a model's settings, promotion policy and
warm-up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from server.config.errors import ConfigError
from server.config.keys import (
    MODEL_KEYS,
    PLACEMENT_KEYS,
    SCALARS,
    SCHEDULING_KEYS,
    WARMUP_KEYS,
    coerce_key,
)
from server.config.model import WARMUP_INPUTS, ModelConfig, WarmupConfig
from server.promotion.policy import Policy

__all__ = ["model_tables"]


def model_tables(table: Any) -> Mapping[str, ModelConfig]:
    """Each `[models.<name>]` table as a ModelConfig; a ConfigError names a wrong key."""
    if not isinstance(table, dict):
        raise ConfigError("'models' must be a table of [models.<name>] tables")
    out: dict[str, ModelConfig] = {}
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ConfigError(f"[models.{name}] must be a table")
        unknown = set(body) - MODEL_KEYS
        if unknown:
            raise ConfigError(
                f"[models.{name}] has unknown key(s) {sorted(unknown)}; known: {sorted(MODEL_KEYS)}"
            )
        stable = body.get("stable")
        if stable is not None and not (isinstance(stable, str) and stable.isdigit()):
            raise ConfigError(f'[models.{name}] stable must be a version string like "1"')
        values: dict[str, Any] = {"stable": stable}
        for key in ("shadow_atol", "shadow_rtol"):
            if key in body:
                values[key] = coerce_key(f"[models.{name}] {key}", body[key], "float")
        if "shadow_top_k" in body:
            top_k = coerce_key(f"[models.{name}] shadow_top_k", body["shadow_top_k"], "int")
            if top_k < 1:
                raise ConfigError(f"[models.{name}] shadow_top_k must be at least 1")
            values["shadow_top_k"] = top_k
        if "shadow_outputs" in body:
            outputs = body["shadow_outputs"]
            if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
                raise ConfigError(f"[models.{name}] shadow_outputs must be a list of output names")
            values["shadow_outputs"] = tuple(outputs)
        if "promotion" in body:
            values["promotion"] = _promotion(name, body["promotion"])
        if "warmup" in body:
            values["warmup"] = _warmup(name, body["warmup"])
        for key in SCHEDULING_KEYS + PLACEMENT_KEYS:
            if key in body:
                values[key] = coerce_key(f"[models.{name}] {key}", body[key], SCALARS[key].type)
        out[name] = ModelConfig(**values)
    return MappingProxyType(out)


def _promotion(model: str, table: Any) -> Policy:
    if not isinstance(table, dict):
        raise ConfigError(f"[models.{model}.promotion] must be a table (docs/promotion.md)")
    try:
        return Policy.from_dict(table)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[models.{model}.promotion]: {exc}") from None


def _warmup(model: str, table: Any) -> WarmupConfig:
    where = f"[models.{model}.warmup]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table (docs/config.md)")
    unknown = set(table) - WARMUP_KEYS
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(WARMUP_KEYS)}"
        )
    inputs = coerce_key(f"{where} inputs", table.get("inputs", "zeros"), "str")
    if inputs not in WARMUP_INPUTS:
        allowed = ", ".join(f'"{i}"' for i in WARMUP_INPUTS)
        raise ConfigError(f"{where} inputs must be one of {allowed}, got {inputs!r}")
    file = table.get("file")
    if inputs == "file":
        if file is None:
            raise ConfigError(f'{where} inputs = "file" needs file = "<name>.npz"')
        file = coerce_key(f"{where} file", file, "str")
        path = Path(file)
        if path.is_absolute() or ".." in path.parts or path.suffix != ".npz":
            raise ConfigError(
                f"{where} file must be an .npz path inside the model directory, "
                f"relative to it, got {file!r}"
            )
    elif file is not None:
        raise ConfigError(f'{where} file is read only with inputs = "file" (inputs is {inputs!r})')
    counts: dict[str, int] = {}
    for key in ("batch_size", "count"):
        counts[key] = coerce_key(f"{where} {key}", table.get(key, 1), "int")
        if counts[key] < 1:
            raise ConfigError(f"{where} {key} must be at least 1, got {counts[key]}")
    return WarmupConfig(inputs=inputs, file=file, **counts)
