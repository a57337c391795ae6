"""The error of a configuration the server cannot use."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and what is wrong."""
