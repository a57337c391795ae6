"""`canaryserve notify test`: have the server send a test event to every configured webhook."""

from __future__ import annotations

import argparse
from typing import Any

from client.access import AddFlags, admin_client
from client.output import emit, message_data

__all__ = ["add_notify_commands"]


def cmd_notify_test(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        deliveries = admin.send_test_notification(args.reason)
    if not deliveries:
        emit(
            args,
            [],
            "no webhooks configured ([[notifications.webhooks]] in the server's config file)",
        )
        return 1
    lines = []
    for d in deliveries:
        outcome = f"answered {d.http_status}" if d.http_status else f"unreachable: {d.error}"
        verdict = "delivered" if d.delivered else "NOT delivered"
        lines.append(f"{d.receiver:<32} {verdict}, {outcome} in {d.seconds * 1000:.0f} ms")
    emit(args, [message_data(d) for d in deliveries], "\n".join(lines))
    return 0 if all(d.delivered for d in deliveries) else 1


def add_notify_commands(sub: Any, common: AddFlags) -> None:
    """Register `notify test`."""
    notify = sub.add_parser("notify", help="notifications: test the configured webhooks")
    actions = notify.add_subparsers(dest="action", required=True)
    test = actions.add_parser("test", help="send a test event to every configured webhook")
    test.add_argument("--reason", default="", help="carried in the test event")
    common(test)
    test.set_defaults(func=cmd_notify_test)
