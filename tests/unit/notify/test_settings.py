"""The `[notifications]` table: typed, secrets from three places, wrong keys named."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.notify.settings import NotificationConfigError, parse_notifications


def test_defaults_and_a_full_table() -> None:
    empty = parse_notifications({})
    assert (empty.webhooks, empty.pre_promotion_hook, empty.queue_size) == ((), None, 256)
    assert (empty.alerts.threshold, empty.alerts.min_requests, empty.alerts.window_s) == (
        0.05,
        20,
        60.0,
    )
    config = parse_notifications(
        {
            "webhooks": [
                {
                    "url": "https://hooks.example/a",
                    "events": ["rollout.*"],
                    "secret": "s3cr3t-value",
                },
                {"url": "http://127.0.0.1:9/b", "name": "pager", "timeout_seconds": 2},
            ],
            "pre_promotion_hook": {"url": "http://127.0.0.1:9/confirm"},
            "queue_size": 10,
            "max_attempts": 3,
            "backoff_initial_seconds": 0.5,
            "backoff_max_seconds": 5,
            "stable_error_rate": 0.2,
            "stable_error_min_requests": 50,
            "stable_error_window_seconds": 120,
        }
    )
    a, b = config.webhooks
    assert (a.events, a.secret, b.name, b.timeout_seconds) == (
        ("rollout.*",),
        "s3cr3t-value",
        "pager",
        2.0,
    )
    assert config.pre_promotion_hook is not None
    assert config.pre_promotion_hook.url == "http://127.0.0.1:9/confirm"
    assert (config.queue_size, config.max_attempts, config.backoff_max_seconds) == (10, 3, 5.0)
    assert (config.alerts.threshold, config.alerts.min_requests) == (0.2, 50)
    assert "s3cr3t" not in repr(config)  # secrets stay out of reprs (and so out of logs)


def test_a_secret_from_the_environment_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    config = parse_notifications(
        {
            "webhooks": [
                {"url": "http://h/1", "secret_env": "HOOK_SECRET"},
                {"url": "http://h/2", "secret_file": str(tmp_path / "secret")},
            ]
        },
        environ={"HOOK_SECRET": "from-env"},
    )
    assert [w.secret for w in config.webhooks] == ["from-env", "from-file"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"webhook": []}, "unknown key"),
        ({"webhooks": [{"url": "ftp://h"}]}, "must be an http"),
        ({"webhooks": [{"url": "http://h", "events": ["rollout.exploded"]}]}, "unknown event type"),
        ({"webhooks": [{"url": "http://h", "secret": "a", "secret_env": "B"}]}, "not several"),
        ({"webhooks": [{"url": "http://h", "secret_env": "UNSET"}]}, r"\$UNSET is not set"),
        ({"webhooks": [{"url": "http://h", "secret_file": "/nonexistent"}]}, "cannot read"),
        ({"webhooks": [{"url": "http://h", "colour": "red"}]}, "unknown key"),
        ({"queue_size": 0}, "queue_size must be > 0"),
        ({"queue_size": "8"}, "queue_size must be an integer, got '8'"),
        ({"backoff_max_seconds": True}, "backoff_max_seconds must be a number, got True"),
        ({"stable_error_rate": 5}, "is a fraction"),
        ({"pre_promotion_hook": {"url": "http://h", "events": ["rollout.*"]}}, "takes url"),
    ],
)
def test_mistakes_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(NotificationConfigError, match=message):
        parse_notifications(table, environ={})
