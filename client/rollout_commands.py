"""`canaryserve rollout`: start a rollout, step its weight or shadow rate, promote, roll back,
pause, resume, undo, explain, approve a step, and the kill switch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from client.access import AddFlags, admin_client
from client.admin import percent_to_ppm
from client.errors import ClientError
from client.output import emit, message_data, rollout_line
from client.status_commands import cmd_explain
from protos.canaryserve.admin.v1 import admin_pb2 as pb

__all__ = ["add_rollout_command"]


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
    if args.action == "explain":
        return cmd_explain(args)
    write = _write_options(args)
    try:
        with admin_client(args) as admin:
            if args.action == "approve":
                rollout = admin.approve(args.model, args.reason)
                emit(args, message_data(rollout), f"approved the current step of {args.model}")
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
                lines = [rollout_line(r) for r in rolled] or ["no active rollout"]
                emit(args, [message_data(r) for r in rolled], "\n".join(lines))
                return 0
            else:
                rollout = admin.transition(args.action, args.model, **write)
    except ValueError as exc:
        raise ClientError("INVALID_ARGUMENT", str(exc)) from None
    prefix = "(dry run) " if args.dry_run else ""
    emit(args, message_data(rollout), prefix + rollout_line(rollout))
    return 0


def add_rollout_command(sub: Any, common: AddFlags) -> None:
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
