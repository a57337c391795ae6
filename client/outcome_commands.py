"""Outcome commands of the CLI: `outcome report` (one, or a batch from JSON lines) and `ab`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from client.access import AddFlags, flag_channel
from client.errors import ClientError
from client.outcomes import Outcome, OutcomesClient
from protos.canaryserve.outcomes.v1 import outcomes_pb2 as pb
from protos.wire import OUTCOME_TOKEN_ENV

__all__ = ["add_outcome_commands", "format_ab"]


def _client(args: argparse.Namespace) -> OutcomesClient:
    channel = flag_channel(args)
    token = args.token or os.environ.get(OUTCOME_TOKEN_ENV) or None
    return OutcomesClient(args.target, token=token, timeout=args.timeout, channel=channel)


def _value(text: str) -> bool | float:
    """true/false: a binary outcome; a number: a real one."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        raise ClientError(
            "INVALID_ARGUMENT", f"value {text!r}: use true or false (binary) or a number (real)"
        ) from None


def _batch(path: str) -> Iterator[Outcome]:
    """Outcomes from JSON lines: {"model", "name", "value", "request_id" and/or "routing_key"}."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                value = doc["value"]
                if not isinstance(value, bool | int | float):
                    raise TypeError("value must be true, false or a number")
                yield Outcome(
                    doc["model"],
                    doc["name"],
                    value if isinstance(value, bool) else float(value),
                    doc.get("request_id", ""),
                    doc.get("routing_key", ""),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ClientError("INVALID_ARGUMENT", f"{path} line {number}: {exc}") from None


def cmd_report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.batch:
            answer = client.report_many(list(_batch(args.batch)))
            data: dict[str, Any] = {
                "accepted": answer.accepted,
                "rejected": [
                    {"index": r.index, "code": r.code, "message": r.message}
                    for r in answer.rejected
                ],
            }
            lines = [f"{answer.accepted} accepted, {len(answer.rejected)} rejected"]
            lines += [f"  #{r.index}: {r.code}: {r.message}" for r in answer.rejected]
            print(json.dumps(data, indent=2) if args.json else "\n".join(lines))
            return 0 if not answer.rejected else 1
        if args.model is None or args.name is None or args.value is None:
            raise ClientError("INVALID_ARGUMENT", "give MODEL NAME VALUE, or --batch FILE")
        if not args.request_id and not args.key:
            raise ClientError("INVALID_ARGUMENT", "give --request-id, --key, or both")
        a = client.report(
            args.model,
            args.name,
            _value(args.value),
            request_id=args.request_id or "",
            routing_key=args.key or "",
        )
        gates = "gates" if a.gates else "counted, does not gate"
        text = (
            f"counted for version {a.version} ({a.stage}, route {a.route_reason},"
            f" joined by {a.joined_by}; {gates})"
        )
        fields = ("version", "stage", "route_reason", "joined_by", "gates")
        data = {f: getattr(a, f) for f in fields}
        print(json.dumps(data, indent=2) if args.json else text)
        return 0


def _num(kind: str, x: float) -> str:
    return f"{x * 100:.2f}%" if kind == "binary" else f"{x:.4g}"


def _diff(kind: str, x: float) -> str:
    return f"{x * 100:+.2f} points" if kind == "binary" else f"{x:+.4g}"


def format_ab(r: pb.CompareOutcomesResponse) -> str:
    """The A/B table: per outcome, each version's mean with its interval, then the candidate
    against stable (the difference and the lift, each with its interval)."""
    pct = f"{r.confidence * 100:g}%"
    candidate = f", candidate {r.candidate_version}" if r.candidate_version else ""
    lines = [
        f"{r.model}: stable {r.stable_version}{candidate} ({pct} intervals over randomized reports)"
    ]
    if r.replicas:
        lines.append(f"reports merged from {len(r.replicas)} replicas: {', '.join(r.replicas)}")
    if not r.outcomes:
        lines.append("  no outcomes reported")
    for o in r.outcomes:
        what = "rate" if o.kind == "binary" else "mean"
        lines.append(f"{o.name} ({o.kind})")
        lines.append(f"  {'version':<8} {'stage':<8} {'n':>8} {what:>10}  {pct} interval")
        for v in o.versions:
            mean = _num(o.kind, v.mean.estimate) if v.HasField("mean") else "n/a"
            ci = (
                f"{_num(o.kind, v.mean.lower)} to {_num(o.kind, v.mean.upper)}"
                if v.HasField("mean")
                else "too few reports"
            )
            other = f"  (+{v.reported - v.count} not randomized)" if v.reported > v.count else ""
            lines.append(f"  {v.version:<8} {v.stage:<8} {v.count:>8} {mean:>10}  {ci}{other}")
        if o.HasField("difference"):
            d = o.difference
            line = (
                f"  candidate - stable: {_diff(o.kind, d.estimate)}"
                f" ({pct}: {_diff(o.kind, d.lower)} to {_diff(o.kind, d.upper)})"
            )
            if o.HasField("lift"):
                lift = o.lift
                line += (
                    f"; lift {lift.estimate * 100:+.1f}%"
                    f" ({pct}: {lift.lower * 100:+.1f}% to {lift.upper * 100:+.1f}%)"
                )
            lines.append(line)
    return "\n".join(lines)


def _ab_json(r: pb.CompareOutcomesResponse) -> dict[str, Any]:
    def interval(i: pb.Interval) -> dict[str, float]:
        return {"estimate": i.estimate, "lower": i.lower, "upper": i.upper}

    return {
        "model": r.model,
        "stable_version": r.stable_version,
        "candidate_version": r.candidate_version,
        "confidence": r.confidence,
        "replicas": list(r.replicas),
        "outcomes": [
            {
                "name": o.name,
                "kind": o.kind,
                "versions": [
                    {
                        "version": v.version,
                        "stage": v.stage,
                        "count": v.count,
                        "sum": v.sum,
                        "reported": v.reported,
                        "mean": interval(v.mean) if v.HasField("mean") else None,
                    }
                    for v in o.versions
                ],
                "difference": interval(o.difference) if o.HasField("difference") else None,
                "lift": interval(o.lift) if o.HasField("lift") else None,
            }
            for o in r.outcomes
        ],
    }


def cmd_ab(args: argparse.Namespace) -> int:
    with _client(args) as client:
        r = client.compare(args.model, confidence=args.confidence, window_seconds=args.window)
    print(json.dumps(_ab_json(r), indent=2) if args.json else format_ab(r))
    return 0


def add_outcome_commands(sub: Any, json_flag: AddFlags) -> None:
    def token(parser: argparse.ArgumentParser) -> None:
        json_flag(parser)
        parser.add_argument(
            "--token",
            help=f"outcome token, when the server has some (default ${OUTCOME_TOKEN_ENV})",
        )

    outcome = sub.add_parser("outcome", help="report business outcomes")
    actions = outcome.add_subparsers(dest="action", required=True)
    report = actions.add_parser(
        "report", help="report an outcome of a request (by request id or routing key)"
    )
    report.add_argument("model", nargs="?")
    report.add_argument("name", nargs="?", help="the outcome's name, e.g. conversion")
    report.add_argument("value", nargs="?", help="true/false (binary) or a number (real)")
    report.add_argument("--request-id", help="the id the inference request carried")
    report.add_argument(
        "--key",
        help="the routing key the request was routed by (with --request-id: joins the report"
        " where the server that receives it did not serve the request)",
    )
    report.add_argument(
        "--batch",
        metavar="FILE",
        help='JSON lines {"model", "name", "value", "request_id" or "routing_key"}; - for stdin',
    )
    token(report)
    report.set_defaults(func=cmd_report)

    ab = sub.add_parser("ab", help="each outcome per version, with intervals and the lift")
    ab.add_argument("model")
    ab.add_argument("--confidence", type=float, default=0.95, help="of every interval")
    ab.add_argument("--window", type=float, default=0.0, help="seconds back (default: all, 24 h)")
    token(ab)
    ab.set_defaults(func=cmd_ab)
