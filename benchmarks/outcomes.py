"""What outcome reporting costs serving, in one command.

    python -m benchmarks.outcomes [--duration 5] [--warmup 1] [--repeats 3]
                                  [--reporter-rate 2000] [--batch 100] [--set KEY=VALUE]

canaryserve (`App`, default config but for the ports, the bundled repository, classifier v2
stable) runs in this process with a rollout of v3 at 50 %.

A. In process (`timeit`, best of 7 x 20,000 calls, one thread): `DataPlane.infer` of a keyed
   classifier request carrying an id, with the join table (the default) and without it; and
   one `OutcomeRecorder.report` joined by request id and by routing key.
B. Over gRPC: keyed requests with ids from the load generator child (`benchmarks.load`), an
   open loop at half the saturation throughput S (closed loop, 8 threads, measured first) on
   8 sender threads, with and without a concurrent reporter — another child process sending
   ReportOutcomes batches (by routing key) at a fixed rate. ABBA order; each side keeps its
   run with the lowest p99. The exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from benchmarks.harness import (
    REPO_ROOT,
    LoadChild,
    abba,
    add_set_option,
    describe,
    machine,
    overrides,
    serving,
)
from benchmarks.load import Result, Spec
from client.admin import AdminClient
from client.outcomes import Outcome, OutcomesClient
from models.build import build_repository
from protos.inference import grpc_service_pb2 as pb
from server.app import App
from server.outcomes.recorder import OutcomeReport
from server.rollout.router import RouteReason, Stage

__all__ = ["main"]

MODEL, CANDIDATE, TOKEN = "classifier", "3", "bench-token"
THREADS = 8


def best_us(call: Callable[[], object], number: int = 20_000, repeat: int = 7) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def in_process(app: App) -> dict[str, float]:
    """Part A: microseconds per call, best of 7."""
    request = pb.ModelInferRequest(model_name=MODEL, id="req-1")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(b"\x00" * 16)
    metadata = {"x-routing-key": "user-7"}
    plane, served = app.dataplane, app.dataplane.served

    def infer() -> object:
        return plane.infer(request, metadata)

    out: dict[str, float] = {}
    for _ in range(3):  # alternate, so drift in the machine's load hits both sides
        plane.served = None
        out["infer, no join table"] = min(out.get("infer, no join table", 1e9), best_us(infer))
        plane.served = served
        out["infer, join table"] = min(out.get("infer, join table", 1e9), best_us(infer))
    assert served is not None
    stable = Stage.STABLE, RouteReason.HASH
    out["join table record alone"] = best_us(
        lambda: served.record("req-1", MODEL, "2", *stable, True), 100_000
    )
    by_id = OutcomeReport(MODEL, "clicked", "binary", 1.0, request_id="req-1")
    by_key = OutcomeReport(MODEL, "clicked", "binary", 1.0, routing_key="user-7")
    out["report by request id"] = best_us(lambda: app.outcomes.report(by_id))
    out["report by routing key"] = best_us(lambda: app.outcomes.report(by_key))
    return out


def reporter(target: str, rate: float, batch: int) -> int:
    """The reporter child: batches of outcomes at `rate` outcomes/s until stdin closes; a line
    "ready" after the first batch, and at the end one JSON line: outcomes sent and accepted,
    and seconds."""
    import threading

    done = threading.Event()

    def watch() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed our stdin
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    sent = accepted = 0
    start = time.monotonic()
    with OutcomesClient(target) as client:
        while not done.is_set():
            if sent == batch:
                print("ready", flush=True)
            outcomes = [
                Outcome(MODEL, "clicked", (sent + i) % 10 == 0, routing_key=f"user-{sent + i}")
                for i in range(batch)
            ]
            accepted += client.report_many(outcomes).accepted
            sent += batch
            due = start + sent / rate
            done.wait(max(0.0, due - time.monotonic()))
    print(json.dumps({"sent": sent, "accepted": accepted, "seconds": time.monotonic() - start}))
    return 0


def run(child: LoadChild, spec: Spec, report: tuple[float, int] | None) -> tuple[Result, Any]:
    proc = None
    if report is not None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.outcomes", "--reporter", spec.target,
             str(report[0]), str(report[1])],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":  # started and reporting: measure now
            raise RuntimeError(f"the reporter did not start (code {proc.poll()})")
    result = child.measure(spec)
    sent = None
    if proc is not None:
        out, _ = proc.communicate("", timeout=60)
        sent = json.loads(out)
    return result, sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outcomes", description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reporter-rate", type=float, default=2000.0, help="outcomes/s")
    parser.add_argument("--batch", type=int, default=100, help="outcomes per ReportOutcomes")
    parser.add_argument("--reporter", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--in-process", action="store_true", help="part A only")
    add_set_option(parser, "outcome_join_max_requests=1000")
    args = parser.parse_args(argv)
    if args.reporter:
        target, rate, batch = args.reporter
        return reporter(target, float(rate), int(batch))
    described = describe(machine())
    settings = {"admin_tokens": {"bench": TOKEN}, "models": {MODEL: {"stable": "2"}},
                **overrides(args.set)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="canaryserve-outcomes-") as tmp:
        build_repository(Path(tmp) / "models")
        with serving(Path(tmp), settings) as app, LoadChild() as child:
            target = f"127.0.0.1:{app.port}"
            with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
                admin.start(MODEL, CANDIDATE, canary_ppm=500_000, reason="benchmark")
            print("A. in process", file=sys.stderr)
            a = in_process(app)
            if args.in_process:
                print(f"machine: {described}\n")
                print("\n".join(f"{name:<24} {us:7.2f} µs" for name, us in a.items()))
                return 0

            def spec(rate: float) -> Spec:
                return Spec(kind="grpc", model=MODEL, shape=[1, 4], concurrency=THREADS,
                            duration=args.duration, warmup=args.warmup, target=target,
                            rate=rate, inputs=64, keys="sequential", request_ids=True)  # fmt: skip

            sat, _ = run(child, spec(0.0), None)
            print(f"B. saturation {sat.rps:.0f} req/s", file=sys.stderr)
            rows: dict[str, list[tuple[Result, Any]]] = {"off": [], "on": []}
            for side in abba(["off", "on"], args.repeats):
                report = (args.reporter_rate, args.batch) if side == "on" else None
                result, sent = run(child, spec(0.5 * sat.rps), report)
                rows[side].append((result, sent))
                print(f"  reporter {side:<3} {result.rps:6.0f} req/s p50 {result.p50_ms:.2f}"
                      f" p99 {result.p99_ms:.2f} ms, server {result.server_us:.0f} µs/req,"
                      f" other {result.other_load:.2f}", file=sys.stderr)  # fmt: skip
    lines = [f"machine: {described}", "", "A. in process, µs per call (best of 7 x 20,000):"]
    lines += [f"  {name:<24} {us:7.2f}" for name, us in a.items()]
    lines += [
        "",
        f"B. open loop at 0.5 x S = {0.5 * sat.rps:.0f} req/s (S {sat.rps:.0f} req/s, closed"
        f" loop, {THREADS} threads), keyed requests with ids; best p99 of {args.repeats} runs",
        f"  reporter: {args.reporter_rate:g} outcomes/s in batches of {args.batch}",
        "  reporter |  req/s |  p50 ms |  p99 ms | server µs/req | other cores | outcomes/s",
    ]
    for side in ("off", "on"):
        result, sent = min(rows[side], key=lambda r: r[0].p99_ms)
        per_s = f"{sent['accepted'] / sent['seconds']:.0f}" if sent else "-"
        lines.append(
            f"  {side:<8} | {result.rps:6.0f} | {result.p50_ms:7.2f} | {result.p99_ms:7.2f} |"
            f" {result.server_us:13.0f} | {result.other_load:11.2f} | {per_s}"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
