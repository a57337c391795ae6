"""The operator commands that only read: status (once, or --watch), explain, route, shadow
and audit."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from client.access import AddFlags, admin_client
from client.errors import ClientError
from client.output import emit, explain_lines, message_data, rollout_line
from protos.canaryserve.admin.v1 import admin_pb2 as pb

__all__ = [
    "add_audit_command",
    "add_route_command",
    "add_shadow_command",
    "add_status_command",
    "cmd_explain",
]


def cmd_status(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        if args.watch:
            # The current state first (sequence 0), then each change; one line per event.
            for event in admin.watch(args.model or "", send_current=True):
                if args.json:
                    print(json.dumps(message_data(event), sort_keys=True))
                elif event.HasField("audit"):
                    print(
                        f"#{event.sequence} {rollout_line(event.rollout)}"
                        f"  [{event.audit.operation} by {event.audit.actor}]"
                    )
                else:
                    print(f"now {rollout_line(event.rollout)}")
                sys.stdout.flush()
            return 0
        rollouts = [admin.get(args.model)] if args.model else admin.rollouts()
        explained = admin.explain(args.model) if args.model else None
        replicas = admin.readiness(args.model) if args.model else []
    lines = [rollout_line(r) for r in rollouts]
    data: Any = [message_data(r) for r in rollouts]
    for rep in replicas:  # a fleet on etcd: where each version is ready
        missing = "" if rep.candidate_ready else "  (candidate NOT ready: serves stable)"
        lines.append(
            f"  replica {rep.replica}: ready {', '.join(rep.ready_versions) or '-'}{missing}"
        )
    if explained is not None and _worth_showing(rollouts[0], explained):
        lines += explain_lines(explained)
        data = {"rollout": data[0], "decision": json.loads(explained.decision_json)}
    emit(args, data, "\n".join(lines))
    return 0


def _worth_showing(rollout: pb.Rollout, e: pb.ExplainRolloutResponse) -> bool:
    """An automatic rollout's decision always; guard rails' only once they see a failure."""
    if not e.evaluated:
        return False
    return rollout.automatic or e.action != "hold" or any(c.status == "fail" for c in e.checks)


def cmd_explain(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        e = admin.explain(args.model)
    if args.json:
        emit(args, json.loads(e.decision_json) if e.evaluated else None, "")
    elif not e.evaluated:
        print(
            f"{args.model}: no decision yet (not automatic, no guard rails, or not evaluated yet)"
        )
    else:
        print(f"{args.model}:")
        print("\n".join(explain_lines(e)))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    metadata = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            raise ClientError("INVALID_ARGUMENT", f"--meta {item!r}: use KEY=VALUE")
        metadata[key.lower()] = value
    with admin_client(args) as admin:
        answer = admin.route(args.model, args.key, metadata)
    text = (
        f"{args.model} key {args.key!r} → version {answer.version} ({answer.stage}, {answer.reason}"
    )
    text += f", position {answer.position:.6f})" if answer.reason == "hash" else ")"
    if answer.shadow_version:
        text += f"; also shadowed on version {answer.shadow_version}"
    emit(args, message_data(answer), text)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        entries = admin.audit(args.model or "", limit=args.limit)
    lines = [
        f"{e.id:>5} {e.at.ToDatetime():%Y-%m-%d %H:%M:%S} {e.actor:<10} {e.model:<14} "
        f"{e.operation:<12} {e.reason}"
        for e in entries
    ]
    emit(args, [message_data(e) for e in entries], "\n".join(lines) or "no audit entries")
    return 0


def _key(worst: dict[str, Any]) -> str:
    """The raw routing key when the server shows it, else its hash (marked #)."""
    if worst.get("routing_key"):
        return str(worst["routing_key"])
    return f"#{worst['routing_key_hash']}" if worst.get("routing_key_hash") else "-"


def cmd_shadow(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        r = admin.shadow_report(args.model)
    report = json.loads(r.report_json) if r.report_json else {}
    if args.json:
        emit(args, {**message_data(r), "report": report, "report_json": None}, "")
        return 0
    if not r.candidate_version:
        print(f"{r.model}: nothing shadowed yet (start a rollout with --shadow PCT)")
        return 0
    lines = [
        f"{r.model}: candidate {r.candidate_version} in shadow",
        f"  sampled {r.sampled}  completed {r.completed}  dropped {r.dropped}  "
        f"errors {r.errors}  timeouts {r.timeouts}  (queue depth {r.queue_depth})",
        f"  disagreement {r.disagreements}/{r.completed} = {r.disagreement_rate:.3%} "
        f"(95% CI {r.disagreement_rate_low:.3%} .. {r.disagreement_rate_high:.3%})",
    ]
    if r.replicas:
        lines.append(
            f"  counts summed over {len(r.replicas)} replicas ({', '.join(r.replicas)});"
            " the details below are this replica's"
        )
    latency = report.get("latency_ms", {})
    if latency.get("p50") is not None:
        lines.append(f"  shadow latency p50 {latency['p50']:.2f} ms  p99 {latency['p99']:.2f} ms")
    for name, out in report.get("outputs", {}).items():
        lines.append(
            f"  output {name}: "
            + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in out.items()
                if v is not None
            )
        )
    for w in report.get("worst", [])[:5]:
        lines.append(
            f"  worst: request {w.get('request_id') or '-'} key {_key(w)} "
            f"output {w.get('output')} ({w.get('reason')}, max abs err "
            f"{w.get('max_abs_err') or 0:.4g})"
        )
    for e in report.get("recent_errors", [])[:3]:
        lines.append(f"  error: {e}")
    print("\n".join(lines))
    return 0


def add_status_command(sub: Any, common: AddFlags) -> None:
    status = sub.add_parser("status", help="rollout state of every model (or one)")
    status.add_argument("model", nargs="?")
    status.add_argument("--watch", action="store_true", help="stream changes as they happen")
    common(status)
    status.set_defaults(func=cmd_status)


def add_route_command(sub: Any, common: AddFlags) -> None:
    route = sub.add_parser("route", help="which version KEY gets now, and why")
    route.add_argument("model")
    route.add_argument("key")
    route.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    common(route)
    route.set_defaults(func=cmd_route)


def add_shadow_command(sub: Any, common: AddFlags) -> None:
    shadow = sub.add_parser("shadow", help="how the shadow candidate compares with stable")
    shadow.add_argument("model")
    common(shadow)
    shadow.set_defaults(func=cmd_shadow)


def add_audit_command(sub: Any, common: AddFlags) -> None:
    audit = sub.add_parser("audit", help="the audit log")
    audit.add_argument("model", nargs="?")
    audit.add_argument("--limit", type=int, default=50)
    common(audit)
    audit.set_defaults(func=cmd_audit)
