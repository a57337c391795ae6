"""How operator commands print what the server answered: a message as JSON-ready data, a
rollout on one line, a promotion decision's checks; JSON with --json, else text."""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from protos.canaryserve.admin.v1 import admin_pb2 as pb

__all__ = ["emit", "explain_lines", "message_data", "percent", "rollout_line"]


def message_data(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: numbers stay numbers (protobuf's JSON mapping would
    quote 64-bit integers), enums by name, timestamps in RFC 3339, unset fields left out."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {k: _value(field.message_type.fields_by_name["value"], v)
                               for k, v in value.items()}  # fmt: skip
        elif field.label == FieldDescriptor.LABEL_REPEATED:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return value.ToJsonString()
        return message_data(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def percent(ppm: int) -> str:
    return f"{ppm / 10_000:g}%"


def rollout_line(r: pb.Rollout) -> str:
    phase = pb.Phase.Name(r.phase).removeprefix("PHASE_").lower()
    text = f"{r.model:<16} stable {r.stable_version:<4} {phase:<12}"
    if r.candidate_version:
        text += (
            f" candidate {r.candidate_version} canary {percent(r.canary_weight_ppm)}"
            f" shadow {percent(r.shadow_rate_ppm)}"
        )
        text += " (paused)" if r.paused else ""
        text += " (auto)" if r.automatic else " (guarded)" if r.guarded else " (no guard)"
    return text + f"  rev {r.revision}"


def explain_lines(e: pb.ExplainRolloutResponse) -> list[str]:
    lines = [f"  last decision: {e.action} — {e.reason}"]
    for c in e.checks:
        lines.append(f"    [{c.status:<7}] {c.name:<20} {c.detail}")
    if e.replicas:
        lines.append(f"  evidence merged from {len(e.replicas)} replicas: {', '.join(e.replicas)}")
    return lines


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)
