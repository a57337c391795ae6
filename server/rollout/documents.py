"""The JSON documents a rollout state carries (its promotion policy or its guard): the
JSONValue type, the frozen deep copy that keeps a frozen state frozen, and their encoding."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

__all__ = ["JSONValue", "freeze", "json_default"]

JSONValue: TypeAlias = (
    "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
)


def freeze(value: Any, where: str) -> JSONValue:
    """Deep-copy a JSON-able value into immutable containers so a frozen state stays frozen."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not representable in JSON")
        return value
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} is not a string")
            out[k] = freeze(v, f"{where}.{k}")
        return MappingProxyType(out)
    if isinstance(value, list | tuple):
        return tuple(freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise ValueError(f"{where}: {type(value).__name__} is not JSON-able")


def json_default(value: object) -> object:
    """`json.dumps`'s `default` for frozen documents: a frozen mapping encodes as a dict."""
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-able")
