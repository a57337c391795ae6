"""Model names and version strings: the one rule for each, checked where a request enters.

A model name is 1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-', not starting with '_',
'.' or '-' (so never a path, never hidden, never empty). A version is a positive integer
without leading zeros, at most 18 digits (so it fits the int64 of ModelConfig). The registry
loads only directories that follow these rules, so a name that breaks them can never exist.
"""

from __future__ import annotations

import re

from server.errors import InvalidInput, shorten

__all__ = [
    "MODEL_NAME_RULE",
    "VERSION_RULE",
    "check_model_name",
    "check_optional_model_name",
    "check_optional_version",
    "check_version",
    "is_model_name",
    "is_version",
]

MODEL_NAME_RULE = (
    "1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-', not starting with '_', '.' or '-'"
)
VERSION_RULE = "a positive integer without leading zeros, such as '1' or '12'"

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def is_model_name(text: str) -> bool:
    return _MODEL_NAME.fullmatch(text) is not None


def is_version(text: str) -> bool:
    return _VERSION.fullmatch(text) is not None


def check_model_name(text: str, field: str = "model") -> str:
    """`text` when it is a model name; InvalidInput naming `field` and the rule otherwise."""
    if _MODEL_NAME.fullmatch(text) is None:
        if not text:
            raise InvalidInput(f"'{field}' is required: a model name ({MODEL_NAME_RULE})")
        raise InvalidInput(
            f"{field} '{shorten(text)}' is not a valid model name: use {MODEL_NAME_RULE}"
        )
    return text


def check_optional_model_name(text: str, field: str = "model") -> str:
    """ "" (meaning every model), or a valid model name."""
    return check_model_name(text, field) if text else text


def check_version(text: str, field: str = "version") -> str:
    """`text` when it is a version string; InvalidInput naming `field` and the rule otherwise."""
    if _VERSION.fullmatch(text) is None:
        if not text:
            raise InvalidInput(f"'{field}' is required: {VERSION_RULE}")
        raise InvalidInput(f"{field} '{shorten(text)}' is not a valid version: {VERSION_RULE}")
    return text


def check_optional_version(text: str, field: str = "version") -> str:
    """ "" (meaning the server picks the version), or a valid version string."""
    return check_version(text, field) if text else text
