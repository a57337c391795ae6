"""The `[notifications]` configuration: typed, validated once at start, secrets resolved.

A secret comes from `secret` (inline), `secret_env` (an environment variable, read here, at
start) or `secret_file` (a file's content, stripped); it is never logged or reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.coercion import coerce
from server.notify.alerts import AlertPolicy
from server.notify.events import TYPES

__all__ = ["HookConfig", "NotificationConfig", "WebhookConfig", "parse_notifications"]


@dataclass(frozen=True)
class WebhookConfig:
    """One receiver (`[[notifications.webhooks]]`)."""

    url: str
    name: str = ""  # how logs and `notify test` name it (default: scheme://host:port)
    events: tuple[str, ...] = ()  # event types or `prefix.*`; empty: every event
    secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class HookConfig:
    """The pre-promotion hook (`[notifications.pre_promotion_hook]`)."""

    url: str
    secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class NotificationConfig:
    """Everything under `[notifications]` (docs/notifications.md)."""

    webhooks: tuple[WebhookConfig, ...] = ()
    pre_promotion_hook: HookConfig | None = None
    queue_size: int = 256
    max_attempts: int = 6
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    alert_tick_seconds: float = 5.0


class NotificationConfigError(ValueError):
    """A `[notifications]` key is wrong; the message names it."""


_SCALARS = {
    "queue_size": "int",
    "max_attempts": "int",
    "backoff_initial_seconds": "float",
    "backoff_max_seconds": "float",
    "alert_tick_seconds": "float",
}
_ALERT_KEYS = {
    "stable_error_rate": "threshold",
    "stable_error_min_requests": "min_requests",
    "stable_error_window_seconds": "window_s",
}
_WEBHOOK_KEYS = {"url", "name", "events", "secret", "secret_env", "secret_file", "timeout_seconds"}


def _number(where: str, value: Any, kind: object) -> Any:
    number = coerce(where, value, kind, NotificationConfigError)
    if number <= 0:
        raise NotificationConfigError(f"{where} must be > 0, got {value!r}")
    return number


def _url(where: str, value: Any) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotificationConfigError(f"{where} url must be an http(s) URL, got {value!r}")
    return str(value)


def _secret(where: str, table: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    given = [k for k in ("secret", "secret_env", "secret_file") if k in table]
    if len(given) > 1:
        raise NotificationConfigError(f"{where}: set one of {given}, not several")
    if not given:
        return None
    key = given[0]
    value = table[key]
    if not isinstance(value, str) or not value:
        raise NotificationConfigError(f"{where} {key} must be a non-empty string")
    if key == "secret":
        return value
    if key == "secret_env":
        secret = environ.get(value, "")
        if not secret:
            raise NotificationConfigError(f"{where} secret_env: ${value} is not set or empty")
        return secret
    try:
        secret = Path(value).read_text().strip()
    except OSError as exc:
        raise NotificationConfigError(
            f"{where} secret_file: cannot read {value}: {exc.strerror}"
        ) from None
    if not secret:
        raise NotificationConfigError(f"{where} secret_file: {value} is empty")
    return secret


def _webhook(where: str, table: Any, environ: Mapping[str, str]) -> WebhookConfig:
    if not isinstance(table, dict):
        raise NotificationConfigError(f"{where} must be a table")
    unknown = set(table) - _WEBHOOK_KEYS
    if unknown:
        raise NotificationConfigError(
            f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(_WEBHOOK_KEYS)}"
        )
    events = table.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise NotificationConfigError(f"{where} events must be a list of event types")
    prefixes = {t.split(".")[0] + ".*" for t in TYPES} | {
        ".".join(t.split(".")[:2]) + ".*" for t in TYPES
    }
    for e in events:
        if e not in TYPES and e not in prefixes:
            raise NotificationConfigError(
                f"{where} events: unknown event type {e!r}; known: {', '.join(TYPES)}"
                " (or a prefix such as 'rollout.*')"
            )
    name = table.get("name", "")
    if not isinstance(name, str):
        raise NotificationConfigError(f"{where} name must be a string")
    return WebhookConfig(
        url=_url(where, table.get("url")),
        name=name,
        events=tuple(events),
        secret=_secret(where, table, environ),
        timeout_seconds=_number(
            f"{where} timeout_seconds", table.get("timeout_seconds", 5.0), "float"
        ),
    )


def parse_notifications(table: Any, environ: Mapping[str, str] = os.environ) -> NotificationConfig:
    """The typed `[notifications]` table; NotificationConfigError names a wrong key."""
    if not isinstance(table, dict):
        raise NotificationConfigError("'notifications' must be a table ([notifications])")
    known = {"webhooks", "pre_promotion_hook", *_SCALARS, *_ALERT_KEYS}
    unknown = set(table) - known
    if unknown:
        raise NotificationConfigError(
            f"[notifications] has unknown key(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    hooks = table.get("webhooks", [])
    if not isinstance(hooks, list):
        raise NotificationConfigError("[[notifications.webhooks]] must be an array of tables")
    webhooks = tuple(
        _webhook(f"[[notifications.webhooks]] #{i + 1}", h, environ) for i, h in enumerate(hooks)
    )
    hook = None
    if "pre_promotion_hook" in table:
        where = "[notifications.pre_promotion_hook]"
        body = table["pre_promotion_hook"]
        parsed = _webhook(where, body, environ)
        if parsed.events or parsed.name:
            raise NotificationConfigError(f"{where} takes url, secret* and timeout_seconds only")
        hook = HookConfig(parsed.url, parsed.secret, parsed.timeout_seconds)
    values: dict[str, Any] = {
        key: _number(f"[notifications] {key}", table[key], kind)
        for key, kind in _SCALARS.items()
        if key in table
    }
    alert: dict[str, Any] = {}
    for key, attr in _ALERT_KEYS.items():
        if key in table:
            kind = {f.name: f.type for f in fields(AlertPolicy)}[attr]
            alert[attr] = _number(f"[notifications] {key}", table[key], kind)
    policy = AlertPolicy(**alert)
    if policy.threshold > 1:
        raise NotificationConfigError(
            f"[notifications] stable_error_rate is a fraction (0.05 = 5%), got {policy.threshold}"
        )
    return NotificationConfig(webhooks=webhooks, pre_promotion_hook=hook, alerts=policy, **values)
