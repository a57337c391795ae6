"""Validated JSON records: the base class and field checks every promotion record uses.

Each record is a frozen dataclass that round-trips through a JSON-ready dict for the audit log
and the admin API; a document that does not validate raises InvalidPromotionInput naming the key.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

from server.errors import InvalidInput

__all__ = ["Document", "InvalidPromotionInput", "check_int", "check_list", "check_number"]


class InvalidPromotionInput(InvalidInput, ValueError):
    """A policy, window or decision document that does not validate; the message names the key."""


def check_int(where: str, value: object, low: int, high: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, int)
    if bad or value < low or (high is not None and value > high):  # type: ignore[operator]
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InvalidPromotionInput(f"{where} must be an integer {bound}, got {value!r}")
    return value  # type: ignore[return-value]


def check_number(where: str, value: object, low: float, high: float = math.inf) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or not low <= value <= high:  # type: ignore[operator]
        raise InvalidPromotionInput(
            f"{where} must be a number in [{low:g}, {high:g}], got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def check_list(where: str, value: object, kind: type = object) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidPromotionInput(f"{where} must be a list, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, kind):
            raise InvalidPromotionInput(f"{where}[{i}] must be a {kind.__name__}, got {item!r}")
    return tuple(value)


def _plain(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, enums to their values: ready for json.dumps."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


class Document:
    """JSON round trip for the frozen dataclasses below: unknown or missing keys are named."""

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def as_dict(self) -> dict[str, Any]:
        return dict(_plain(self))

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Self:
        what = cls.__name__
        if not isinstance(doc, Mapping):
            raise InvalidPromotionInput(f"{what} must be a JSON object, got {type(doc).__name__}")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = [f.name for f in fields]
        for key in doc:
            if key not in names:
                raise InvalidPromotionInput(f"unknown {what} key {key!r} (known: {names})")
        for f in fields:
            if f.default is dataclasses.MISSING and f.name not in doc:
                raise InvalidPromotionInput(f"{what} is missing the key {f.name!r}")
        kw = dict(doc)
        for key, load in cls._NESTED.items():
            if kw.get(key) is not None:
                kw[key] = load(kw[key])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(json.loads(text))
