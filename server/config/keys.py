"""The keys of the config file: which set a scalar of `Config`, which open a table, which a
`[models.<name>]` table takes, and how one value is checked against its key's type."""

from __future__ import annotations

import dataclasses
from typing import Any

from server.coercion import coerce
from server.config.errors import ConfigError
from server.config.model import ModelConfig, WarmupConfig
from server.config.settings import Config

__all__ = [
    "MODEL_KEYS",
    "PLACEMENT_KEYS",
    "SCALARS",
    "SCHEDULING_KEYS",
    "TABLES",
    "WARMUP_KEYS",
    "coerce_key",
]

#: Keys that open a table rather than set a scalar.
TABLES = ("models", "notifications")
#: Every other top-level key: its `Config` field, whose annotation is the type it takes.
SCALARS = {f.name: f for f in dataclasses.fields(Config) if f.name not in TABLES}
#: What a `[models.<name>]` table may hold.
MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}
#: What a `[models.<name>.warmup]` table may hold.
WARMUP_KEYS = {f.name for f in dataclasses.fields(WarmupConfig)}
#: Server-wide keys a model may override (docs/scheduling.md), typed as the server-wide ones.
SCHEDULING_KEYS = (
    "instances",
    "max_queue_size",
    "queue_timeout_seconds",
    "max_batch_size",
    "max_queue_delay_microseconds",
    "candidate_instances",
    "candidate_max_queue_size",
    "candidate_queue_timeout_seconds",
    "candidate_overload",
)
#: Containment keys a model may override, typed as the server-wide ones.
PLACEMENT_KEYS = (
    "isolation",
    "candidate_isolation",
    "memory_budget_mb",
    "candidate_intra_op_threads",
    "candidate_arena_shrinkage",
    "candidate_priority",
)


def coerce_key(key: str, value: Any, kind: Any) -> Any:
    """`value` as the type of `key`, else a ConfigError naming `key`."""
    return coerce(f"'{key}'", value, kind, ConfigError)
