"""How a CLI command reaches the server: the channel its flags describe (--target, and TLS or
mTLS from --tls-ca, --tls-cert, --tls-key) and, for operator commands, the admin token and
the admin client."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import grpc

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from protos.wire import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE

__all__ = ["AddFlags", "admin_client", "flag_channel", "resolve_token"]

#: Adds the flags every command of a group shares (the token, --json) to its parser.
AddFlags: TypeAlias = Callable[[argparse.ArgumentParser], None]
#: What the CLI called the variable before it shared the server's; named only in a hint.
_FORMER_TOKEN_ENV = "CANARYSERVE_TOKEN"


def flag_channel(args: argparse.Namespace) -> grpc.Channel:
    """A channel to --target, over TLS when the flags name a certificate."""
    return open_channel(
        args.target, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key
    )


def resolve_token(args: argparse.Namespace) -> str:
    """--token, then $CANARYSERVE_ADMIN_TOKEN, then <state dir>/admin.token."""
    if args.token:
        return str(args.token)
    if os.environ.get(ADMIN_TOKEN_ENV):
        return os.environ[ADMIN_TOKEN_ENV]
    path = Path(args.state_dir) / ADMIN_TOKEN_FILE
    if path.is_file():
        return path.read_text().strip()
    former = (
        f" ({_FORMER_TOKEN_ENV} is no longer read: set {ADMIN_TOKEN_ENV} instead)"
        if os.environ.get(_FORMER_TOKEN_ENV)
        else ""
    )
    raise ClientError(
        "UNAUTHENTICATED",
        f"no admin token: pass --token, set {ADMIN_TOKEN_ENV}, or run where {path} exists" + former,
    )


def admin_client(args: argparse.Namespace) -> AdminClient:
    """The AdminService client the flags describe, with the resolved admin token."""
    return AdminClient(flag_channel(args), resolve_token(args), timeout=args.timeout)
