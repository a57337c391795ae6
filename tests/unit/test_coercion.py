"""One configuration value checked against its setting's type: the same rule for every key."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.coercion import KINDS, coerce


class Wrong(ValueError):
    """The caller's own error type."""


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("a", "str", "a"),
        ("b", "str | None", "b"),
        (3, "int", 3),
        (3, "int | None", 3),
        (3, "float", 3.0),
        (2.5, "float", 2.5),
        (False, "bool", False),
        ("models", "Path", Path("models")),
        (Path("/x"), "Path | None", Path("/x")),
        ({"ci": "t0k3n"}, "Mapping[str, str]", {"ci": "t0k3n"}),
    ],
)
def test_a_value_of_the_right_type_comes_back_typed(value: Any, kind: str, expected: Any) -> None:
    got = coerce("'key'", value, kind, Wrong)
    assert got == expected
    assert type(got) is type(expected) or isinstance(got, MappingProxyType)


def test_an_int_becomes_a_float_where_a_float_is_asked_for() -> None:
    assert isinstance(coerce("'key'", 3, "float"), float)


def test_a_table_of_names_comes_back_read_only() -> None:
    tokens = coerce("'admin_tokens'", {"ci": "t"}, "Mapping[str, str]")
    with pytest.raises(TypeError):
        tokens["other"] = "x"


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (True, "int", "'key' must be an integer, got True"),
        (1.5, "int", "'key' must be an integer, got 1.5"),
        ("3", "int", "'key' must be an integer, got '3'"),
        (True, "float", "'key' must be a number, got True"),
        ("fast", "float", "'key' must be a number, got 'fast'"),
        ("no", "bool", "'key' must be true or false, got 'no'"),
        (1, "bool", "'key' must be true or false, got 1"),
        (7, "Path", "'key' must be a path string, got 7"),
        (7, "str", "'key' must be a string, got 7"),
        ({"ci": ""}, "Mapping[str, str]", "'key' must be a table of name"),
        (["t"], "Mapping[str, str]", "'key' must be a table of name"),
    ],
)
def test_a_wrong_value_raises_the_callers_error_naming_the_key(
    value: Any, kind: str, message: str
) -> None:
    with pytest.raises(Wrong) as raised:
        coerce("'key'", value, kind, Wrong)
    assert str(raised.value).startswith(message)


def test_an_unknown_kind_is_a_programming_error_not_a_users() -> None:
    with pytest.raises(TypeError, match="known kinds"):
        coerce("'key'", "x", "tuple[str, ...]")


@given(st.booleans(), st.sampled_from(["int", "float"]))
def test_a_bool_is_never_a_number(value: bool, kind: str) -> None:
    """Python counts True as 1; a TOML `true` for a number is a mistake all the same."""
    with pytest.raises(ValueError):
        coerce("'key'", value, kind)


@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans()))
def test_every_kind_either_accepts_a_value_or_says_why(value: object) -> None:
    for kind in KINDS:
        try:
            coerce("'key'", value, kind, Wrong)
        except Wrong as exc:
            assert str(exc).startswith("'key' must be ")
