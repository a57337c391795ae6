"""Operator commands of the CLI: status, rollout, route, audit, model — over the AdminService."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from client.admin import AdminClient, percent_to_ppm
from client.channel import open_channel
from client.errors import ClientError
from protos.canaryserve.admin.v1 import admin_pb2 as pb
from protos.wire import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE

__all__ = ["add_commands", "resolve_token"]

#: What the CLI called the variable before it shared the server's; named only in a hint.
_FORMER_TOKEN_ENV = "CANARYSERVE_TOKEN"
Handler = Callable[[argparse.Namespace], int]


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


def _admin(args: argparse.Namespace) -> AdminClient:
    channel = open_channel(
        args.target, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key
    )
    return AdminClient(channel, resolve_token(args), timeout=args.timeout)


def _dict(message: Message) -> dict[str, Any]:
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
        return _dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _pct(ppm: int) -> str:
    return f"{ppm / 10_000:g}%"


def _rollout_line(r: pb.Rollout) -> str:
    phase = pb.Phase.Name(r.phase).removeprefix("PHASE_").lower()
    text = f"{r.model:<16} stable {r.stable_version:<4} {phase:<12}"
    if r.candidate_version:
        text += (
            f" candidate {r.candidate_version} canary {_pct(r.canary_weight_ppm)}"
            f" shadow {_pct(r.shadow_rate_ppm)}"
        )
        text += " (paused)" if r.paused else ""
        text += " (auto)" if r.automatic else " (guarded)" if r.guarded else " (no guard)"
    return text + f"  rev {r.revision}"


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def cmd_status(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        if args.watch:
            # The current state first (sequence 0), then each change; one line per event.
            for event in admin.watch(args.model or "", send_current=True):
                if args.json:
                    print(json.dumps(_dict(event), sort_keys=True))
                elif event.HasField("audit"):
                    print(
                        f"#{event.sequence} {_rollout_line(event.rollout)}"
                        f"  [{event.audit.operation} by {event.audit.actor}]"
                    )
                else:
                    print(f"now {_rollout_line(event.rollout)}")
                sys.stdout.flush()
            return 0
        rollouts = [admin.get(args.model)] if args.model else admin.rollouts()
        explained = admin.explain(args.model) if args.model else None
        replicas = admin.readiness(args.model) if args.model else []
    lines = [_rollout_line(r) for r in rollouts]
    data: Any = [_dict(r) for r in rollouts]
    for rep in replicas:  # a fleet on etcd: where each version is ready
        missing = "" if rep.candidate_ready else "  (candidate NOT ready: serves stable)"
        lines.append(
            f"  replica {rep.replica}: ready {', '.join(rep.ready_versions) or '-'}{missing}"
        )
    if explained is not None and _worth_showing(rollouts[0], explained):
        lines += _explain_lines(explained)
        data = {"rollout": data[0], "decision": json.loads(explained.decision_json)}
    _print(args, data, "\n".join(lines))
    return 0


def _worth_showing(rollout: pb.Rollout, e: pb.ExplainRolloutResponse) -> bool:
    """An automatic rollout's decision always; guard rails' only once they see a failure."""
    if not e.evaluated:
        return False
    return rollout.automatic or e.action != "hold" or any(c.status == "fail" for c in e.checks)


def _explain_lines(e: pb.ExplainRolloutResponse) -> list[str]:
    lines = [f"  last decision: {e.action} — {e.reason}"]
    for c in e.checks:
        lines.append(f"    [{c.status:<7}] {c.name:<20} {c.detail}")
    if e.replicas:
        lines.append(f"  evidence merged from {len(e.replicas)} replicas: {', '.join(e.replicas)}")
    return lines


def cmd_explain(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        e = admin.explain(args.model)
    if args.json:
        _print(args, json.loads(e.decision_json) if e.evaluated else None, "")
    elif not e.evaluated:
        print(
            f"{args.model}: no decision yet (not automatic, no guard rails, or not evaluated yet)"
        )
    else:
        print(f"{args.model}:")
        print("\n".join(_explain_lines(e)))
    return 0


def _write_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "expected_revision": args.expect_revision,
        "dry_run": args.dry_run,
        "reason": args.reason,
    }


def _cohort(spec: str) -> pb.CohortRule:
    rule, _, target = spec.partition(":")
    key, sep, value = rule.partition("=")
    if not sep or target not in ("", "candidate", "stable"):
        raise ClientError(
            "INVALID_ARGUMENT", f"--cohort {spec!r}: use KEY=VALUE[:candidate|stable]"
        )
    kind = pb.COHORT_TARGET_STABLE if target == "stable" else pb.COHORT_TARGET_CANDIDATE
    return pb.CohortRule(metadata_key=key.lower(), value=value, target=kind)


def cmd_rollout(args: argparse.Namespace) -> int:
    write = _write_options(args)
    try:
        with _admin(args) as admin:
            if args.action == "explain":
                return cmd_explain(args)
            if args.action == "approve":
                rollout = admin.approve(args.model, args.reason)
                _print(args, _dict(rollout), f"approved the current step of {args.model}")
                return 0
            if args.action == "start":
                policy = Path(args.policy).read_text() if args.policy else ""
                response = admin.start(
                    args.model,
                    args.version,
                    canary_ppm=percent_to_ppm(args.weight),
                    shadow_ppm=percent_to_ppm(args.shadow),
                    cohort_rules=[_cohort(c) for c in args.cohort],
                    automatic=args.auto or bool(policy),
                    policy_json=policy,
                    no_guard=args.no_guard,
                    allow_signature_change=args.allow_signature_change,
                    **write,
                )
                rollout = response.rollout
            elif args.action == "weight":
                rollout = admin.set_weight(
                    args.model, percent_to_ppm(args.percent), **write
                ).rollout
            elif args.action == "shadow":
                rollout = admin.set_shadow(
                    args.model, percent_to_ppm(args.percent), **write
                ).rollout
            elif args.action == "kill-switch":
                rolled = admin.kill_switch(dry_run=args.dry_run, reason=args.reason)
                lines = [_rollout_line(r) for r in rolled] or ["no active rollout"]
                _print(args, [_dict(r) for r in rolled], "\n".join(lines))
                return 0
            else:
                rollout = admin.transition(args.action, args.model, **write)
    except ValueError as exc:
        raise ClientError("INVALID_ARGUMENT", str(exc)) from None
    prefix = "(dry run) " if args.dry_run else ""
    _print(args, _dict(rollout), prefix + _rollout_line(rollout))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    metadata = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            raise ClientError("INVALID_ARGUMENT", f"--meta {item!r}: use KEY=VALUE")
        metadata[key.lower()] = value
    with _admin(args) as admin:
        answer = admin.route(args.model, args.key, metadata)
    text = (
        f"{args.model} key {args.key!r} → version {answer.version} ({answer.stage}, {answer.reason}"
    )
    text += f", position {answer.position:.6f})" if answer.reason == "hash" else ")"
    if answer.shadow_version:
        text += f"; also shadowed on version {answer.shadow_version}"
    _print(args, _dict(answer), text)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        entries = admin.audit(args.model or "", limit=args.limit)
    lines = [
        f"{e.id:>5} {e.at.ToDatetime():%Y-%m-%d %H:%M:%S} {e.actor:<10} {e.model:<14} "
        f"{e.operation:<12} {e.reason}"
        for e in entries
    ]
    _print(args, [_dict(e) for e in entries], "\n".join(lines) or "no audit entries")
    return 0


def _key(worst: dict[str, Any]) -> str:
    """The raw routing key when the server shows it, else its hash (marked #)."""
    if worst.get("routing_key"):
        return str(worst["routing_key"])
    return f"#{worst['routing_key_hash']}" if worst.get("routing_key_hash") else "-"


def cmd_shadow(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        r = admin.shadow_report(args.model)
    report = json.loads(r.report_json) if r.report_json else {}
    if args.json:
        _print(args, {**_dict(r), "report": report, "report_json": None}, "")
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


def cmd_model(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        call = admin.load if args.action == "load" else admin.unload
        versions = call(args.model, args.version, reason=args.reason)
    lines = [
        f"{args.model} version {v.version}: {v.state}" + (f" ({v.reason})" if v.reason else "")
        for v in versions
    ]
    _print(args, [_dict(v) for v in versions], "\n".join(lines))
    return 0


def _injection(specs: list[str]) -> tuple[int, float]:
    """--inject errors=5% / latency=+20ms → (error ppm, added milliseconds)."""
    errors, latency = 0, 0.0
    for spec in specs:
        kind, sep, value = spec.partition("=")
        try:
            if kind == "errors" and sep and value.endswith("%"):
                errors = percent_to_ppm(float(value[:-1]))
                continue
            if kind == "latency" and sep and value.endswith("ms"):
                latency = float(value.removeprefix("+")[:-2])
                if latency >= 0:
                    continue
        except ValueError:
            pass
        raise ClientError(
            "INVALID_ARGUMENT", f"--inject {spec!r}: use errors=PCT% or latency=+MSms"
        )
    return errors, latency


def cmd_drill(args: argparse.Namespace) -> int:
    errors, latency = _injection(args.inject)
    with _admin(args) as admin:
        started = admin.start_drill(
            args.model,
            error_ppm=errors,
            added_latency_ms=latency,
            canary_ppm=percent_to_ppm(args.weight),
            reason=args.reason,
        )
        version = started.drill_version
        if not args.json:
            print(
                f"{args.model}: drill started: version {version} (a copy of"
                f" {started.rollout.stable_version}) on {_pct(started.rollout.canary_weight_ppm)}"
                f" with {' '.join(args.inject)}; watching for up to {args.duration:g} s"
            )
            sys.stdout.flush()
        deadline = time.monotonic() + args.duration
        try:
            while time.monotonic() < deadline:
                if admin.get(args.model).candidate_version != version:
                    break  # the guard rails (or an operator) rolled it back
                time.sleep(0.2)
        finally:
            report = admin.end_drill(args.model, args.reason)
    data = json.loads(report.report_json)
    if report.caught:
        verdict = f"caught: rolled back by the guard rails {report.seconds_to_rollback:.1f} s in"
    else:
        verdict = f"NOT caught within {args.duration:g} s: rolled back by the drill"
    text = (
        f"{args.model}: drill of version {version}: {verdict}\n"
        f"  candidate requests served: {report.candidate_requests}\n"
        f"  callers affected: {report.callers_affected}"
    )
    _print(args, data, text)
    return 0


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the operator subcommands; `common` adds the shared flags (token, --json)."""
    status = sub.add_parser("status", help="rollout state of every model (or one)")
    status.add_argument("model", nargs="?")
    status.add_argument("--watch", action="store_true", help="stream changes as they happen")
    common(status)
    status.set_defaults(func=cmd_status)

    rollout = sub.add_parser("rollout", help="start, step, promote or roll back a rollout")
    actions = rollout.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start rolling out VERSION of MODEL")
    start.add_argument("model")
    start.add_argument("version")
    start.add_argument("--weight", type=float, default=0.0, help="canary percent (0.0001 steps)")
    start.add_argument("--shadow", type=float, default=0.0, help="shadow sample percent")
    start.add_argument(
        "--cohort",
        action="append",
        default=[],
        metavar="KEY=VALUE[:TARGET]",
        help="metadata rule before hashing; target candidate (default) or stable",
    )
    start.add_argument(
        "--auto",
        action="store_true",
        help="let the promotion controller step, promote or roll back by itself",
    )
    start.add_argument(
        "--policy", metavar="FILE.json", help="promotion policy (docs/promotion.md); implies --auto"
    )
    start.add_argument(
        "--no-guard",
        action="store_true",
        help="manual rollouts: no guard rails (by default a decisively failing gate rolls back)",
    )
    start.add_argument(
        "--allow-signature-change",
        action="store_true",
        help="start even if the candidate's inputs/outputs are incompatible with stable's",
    )
    for name, helptext in (
        ("weight", "set the canary percent"),
        ("shadow", "set the shadow percent"),
    ):
        p = actions.add_parser(name, help=helptext)
        p.add_argument("model")
        p.add_argument("percent", type=float)
    for name in ("promote", "rollback", "pause", "resume"):
        actions.add_parser(name, help=f"{name} the model's candidate").add_argument("model")
    actions.add_parser(
        "undo", help="undo the last promotion (within the rollback grace period)"
    ).add_argument("model")
    actions.add_parser("kill-switch", help="roll back every active rollout now")
    actions.add_parser(
        "explain", help="the latest promotion decision and its evidence"
    ).add_argument("model")
    actions.add_parser("approve", help="approve the current manual step").add_argument("model")
    for p in actions.choices.values():
        p.add_argument("--expect-revision", type=int, default=0, help="compare-and-set")
        p.add_argument("--dry-run", action="store_true", help="validate only; change nothing")
        p.add_argument("--reason", default="", help="why, for the audit log")
        common(p)
    rollout.set_defaults(func=cmd_rollout)

    route = sub.add_parser("route", help="which version KEY gets now, and why")
    route.add_argument("model")
    route.add_argument("key")
    route.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    common(route)
    route.set_defaults(func=cmd_route)

    shadow = sub.add_parser("shadow", help="how the shadow candidate compares with stable")
    shadow.add_argument("model")
    common(shadow)
    shadow.set_defaults(func=cmd_shadow)

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
    drill = sub.add_parser(
        "drill", help="roll out a copy of stable with injected faults: do the guard rails catch it?"
    )
    drill.add_argument("model")
    drill.add_argument(
        "--inject",
        action="append",
        required=True,
        metavar="errors=PCT%|latency=+MSms",
        help="the fault in the copy's path; repeat for both",
    )
    drill.add_argument("--duration", type=float, default=60.0, help="seconds to wait at most")
    drill.add_argument("--weight", type=float, default=10.0, help="canary percent of the copy")
    drill.add_argument("--reason", default="", help="why, for the audit log")
    common(drill)
    drill.set_defaults(func=cmd_drill)

    audit = sub.add_parser("audit", help="the audit log")
    audit.add_argument("model", nargs="?")
    audit.add_argument("--limit", type=int, default=50)
    common(audit)
    audit.set_defaults(func=cmd_audit)
