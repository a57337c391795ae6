"""One configuration value, as TOML parsed it, checked against the type of its setting.

The server's configuration (`server.config`) and the `[notifications]` table
(`server.notify.settings`) both check their values here, so every key says the same thing when
it has the wrong type. Each caller raises its own error type and names the key its own way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["KINDS", "coerce"]

#: The kinds of setting a value can be coerced to, spelled as a dataclass field's annotation
#: (with `from __future__ import annotations`) spells its type; `X | None` counts as `X`.
KINDS = ("str", "int", "float", "bool", "Path", "Mapping[str, str]")


def coerce(name: str, value: Any, kind: Any, error: type[ValueError] = ValueError) -> Any:
    """`value` as a setting of `kind`, else `error("<name> must be ..., got <value>")`.

    An int is a float too (made one); a bool is neither an int nor a float, though Python
    says it is; a Path is given as a string; a table of names becomes a read-only mapping.
    """
    kind = str(kind).removesuffix(" | None")
    if kind not in KINDS:
        raise TypeError(f"cannot coerce to {kind!r}; known kinds: {', '.join(KINDS)}")
    if kind == "Mapping[str, str]":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            raise error(f'{name} must be a table of name = "non-empty string"')
        return MappingProxyType(dict(value))
    if kind == "Path":
        if not isinstance(value, str | Path):
            raise error(f"{name} must be a path string, got {value!r}")
        return Path(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise error(f"{name} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{name} must be an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"{name} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise error(f"{name} must be a string, got {value!r}")
    return value
