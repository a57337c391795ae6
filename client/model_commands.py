"""`canaryserve model load|unload`: load a model's versions from the repository directory, or
stop serving them (a whole model, or one version)."""

from __future__ import annotations

import argparse
from typing import Any

from client.access import AddFlags, admin_client
from client.output import emit, message_data

__all__ = ["add_model_command"]


def cmd_model(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        call = admin.load if args.action == "load" else admin.unload
        versions = call(args.model, args.version, reason=args.reason)
    lines = [
        f"{args.model} version {v.version}: {v.state}" + (f" ({v.reason})" if v.reason else "")
        for v in versions
    ]
    emit(args, [message_data(v) for v in versions], "\n".join(lines))
    return 0


def add_model_command(sub: Any, common: AddFlags) -> None:
    model = sub.add_parser("model", help="load or unload a model, or one version of it")
    model_actions = model.add_subparsers(dest="action", required=True)
    for name, helptext in (
        ("load", "load MODEL's versions from the repository directory (or just VERSION)"),
        ("unload", "stop serving MODEL (or just VERSION); refused for what routing uses"),
    ):
        p = model_actions.add_parser(name, help=helptext)
        p.add_argument("model")
        p.add_argument("version", nargs="?", default="", help="one version (default: all)")
        p.add_argument("--reason", default="", help="why, for the audit log")
        common(p)
    model.set_defaults(func=cmd_model)
