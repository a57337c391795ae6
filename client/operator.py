"""The operator commands of the CLI, over the AdminService: what each command group registers,
in the order `canaryserve --help` lists them. The commands live in one module per group."""

from __future__ import annotations

from typing import Any

from client.access import AddFlags, resolve_token
from client.drill_commands import add_drill_command
from client.model_commands import add_model_command
from client.rollout_commands import add_rollout_command
from client.status_commands import (
    add_audit_command,
    add_route_command,
    add_shadow_command,
    add_status_command,
)

__all__ = ["add_commands", "resolve_token"]


def add_commands(sub: Any, common: AddFlags) -> None:
    """Register the operator subcommands; `common` adds the shared flags (token, --json)."""
    add_status_command(sub, common)
    add_rollout_command(sub, common)
    add_route_command(sub, common)
    add_shadow_command(sub, common)
    add_model_command(sub, common)
    add_drill_command(sub, common)
    add_audit_command(sub, common)
