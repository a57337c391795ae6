"""`canaryserve drill`: roll out a copy of stable with injected faults and report whether the
guard rails caught it, how fast, and how many callers it touched."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from client.access import AddFlags, admin_client
from client.admin import percent_to_ppm
from client.errors import ClientError
from client.output import emit, percent

__all__ = ["add_drill_command"]


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
    with admin_client(args) as admin:
        started = admin.start_drill(
            args.model,
            error_ppm=errors,
            added_latency_ms=latency,
            canary_ppm=percent_to_ppm(args.weight),
            reason=args.reason,
        )
        version = started.drill_version
        if not args.json:
            weight = percent(started.rollout.canary_weight_ppm)
            print(
                f"{args.model}: drill started: version {version} (a copy of"
                f" {started.rollout.stable_version}) on {weight}"
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
    emit(args, data, text)
    return 0


def add_drill_command(sub: Any, common: AddFlags) -> None:
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
