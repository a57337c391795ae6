"""What an active rollout and shadow mode cost the primary, measured on one server in one run.

    python -m benchmarks.rollout_shadow [--duration 3] [--warmup 0.5] [--repeats 3]
                                        [--quick] [--json out.json] [--set KEY=VALUE]

It starts canaryserve (`App`, port 0, the bundled repository, classifier stable v2) in this
process and drives it from the load generator child process (`benchmarks.load`: own GIL, one
channel per thread). Every request is batch 1 and carries its own routing key (`x-routing-key`)
plus an `x-tier` header that the cohort rules read (and never match).

A. Routing cost: closed loop at concurrency 1, 4, 16 with no rollout, a rollout sending 5 % to
   candidate v3, and the same rollout with two cohort rules; ABBA order, best run of each side.
B. Shadow cost: the saturation throughput S (closed loop, concurrency 16, shadow off), then
   shadow off / 10 % / 100 % of v3 (and 100 % of the slow v4) at half load, an open loop of
   0.5·S arrivals/s on 8 sender threads (latency counted from each request's scheduled send
   time), and at saturation (closed loop, concurrency 16). "Off" is a rollout of v3 with canary
   0 and shadow 0, so only the shadow rate differs. Counts come from the server's shadow report;
   the shadow queue depth is polled in-process every 5 ms.
Every configuration change is a rollback plus a new rollout, which also resets the report. Each
side keeps its best run (closed loop: most req/s; open loop: lowest p99). The exit code is 0
whether or not the targets are met. See docs/benchmarks.md, "Rollouts and shadow".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from benchmarks.harness import (
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
from models.build import build_repository
from protos.canaryserve.admin.v1 import admin_pb2 as apb
from server.app import App

__all__ = ["Bench", "Row", "main", "measure", "render"]

MODEL, CANDIDATE, SLOW, TOKEN = "classifier", "3", "4", "bench-token"
CANARY_PPM = 50_000  # part A's canary weight: 5 %
ROUTING_TARGET = 0.95  # A: rollout throughput >= 0.95x no rollout
P99_TARGET = 1.10  # B: at half load, 100 % shadow p99 <= 1.10x shadow off
SAT_TARGET = 0.90  # B: at saturation, 100 % shadow throughput >= 0.90x off (and drops > 0)
TIER = [["x-tier", "standard"]]  # metadata the cohort rules read (and never match)
COHORTS = (
    apb.CohortRule(metadata_key="x-tier", value="beta", target=apb.COHORT_TARGET_CANDIDATE),
    apb.CohortRule(metadata_key="x-tier", value="internal", target=apb.COHORT_TARGET_STABLE),
)
#: A: name -> (candidate, canary ppm, cohort rules). B: name -> (candidate, shadow ppm).
SIDES_A: dict[str, tuple[str | None, int, bool]] = {
    "none": (None, 0, False), "rollout": (CANDIDATE, CANARY_PPM, False),
    "cohort": (CANDIDATE, CANARY_PPM, True),
}  # fmt: skip
SHADOWS: dict[str, tuple[str, int]] = {
    "off": (CANDIDATE, 0), "10% v3": (CANDIDATE, 100_000), "100% v3": (CANDIDATE, 1_000_000),
    "100% v4 slow": (SLOW, 1_000_000),
}  # fmt: skip
INPUTS = 64  # distinct N(0, 1) inputs, cycled (so v3 disagrees on about 1 %)
CONCURRENCY = (1, 4, 16)  # part A
OPEN_THREADS = 8  # part B half load: sender threads (in flight at most)


@dataclass
class Row:
    """One run as the parent saw it: the load, server CPU, other load and the shadow report."""

    part: str
    setting: str
    spec: Spec
    load: Result
    server_us: float = 0.0  # this process's CPU per call (servers, shadow workers)
    other: float = 0.0  # cores busy with other processes
    shadow: dict[str, int] = field(default_factory=dict)


class Bench:
    """The server, its admin client, the load child, and the rollout currently active."""

    def __init__(self, app: App, child: LoadChild, args: argparse.Namespace) -> None:
        self.app, self.child, self.args = app, child, args
        self.target = f"127.0.0.1:{app.port}"
        self.admin = AdminClient(grpc.insecure_channel(self.target), TOKEN)
        self.active = False

    def configure(self, candidate: str | None, canary: int, shadow: int, cohorts: bool) -> None:
        """Roll back what is active, then start the given rollout (None: stay without one)."""
        if self.active:
            self.admin.transition("rollback", MODEL, reason="benchmark reset")
        self.active = candidate is not None
        if candidate is not None:
            rules = COHORTS if cohorts else ()
            self.admin.start(
                MODEL, candidate, canary_ppm=canary, shadow_ppm=shadow, cohort_rules=rules
            )

    def spec(self, concurrency: int, rate: float) -> Spec:
        """Keyed batch-1 requests (x-routing-key user-<n>, x-tier standard), closed loop at
        rate 0, else `rate` arrivals/s over `concurrency` threads."""
        return Spec(kind="grpc", model=MODEL, shape=[1, 4], concurrency=concurrency,
                    duration=self.args.duration, warmup=self.args.warmup, target=self.target,
                    rate=rate, inputs=INPUTS, keys="sequential", metadata=TIER)  # fmt: skip

    def run(self, part: str, setting: str, concurrency: int, rate: float = 0.0) -> Row:
        """One run; in part B also the shadow report and the deepest queue seen."""
        spec = self.spec(concurrency, rate)
        stop, depth, shadow = threading.Event(), [0], part.startswith("B")

        def probe() -> None:
            while not stop.wait(0.005):
                depth[0] = max(depth[0], self.app.shadow.queue_depth())

        poller = threading.Thread(target=probe, daemon=True)
        poller.start()
        print(f"  {part} {setting:<13} c={concurrency:<2}", end="", file=sys.stderr, flush=True)
        load = self.child.measure(spec)
        stop.set()
        row = Row(part, setting, spec, load, load.server_us, load.other_load)
        poller.join()
        if shadow:
            self.app.shadow.force_flush(5.0)  # every sampled job has ended in one count
            r = self.admin.shadow_report(MODEL)
            row.shadow = {
                "sampled": r.sampled, "completed": r.completed, "dropped": r.dropped,
                "timeouts": r.timeouts, "errors": r.errors, "max_depth": depth[0],
            }  # fmt: skip
        error = f" ({load.errors} errors, first: {load.first_error})" if load.errors else ""
        print(f" {load.rps:6.0f} req/s p99 {load.p99_ms:6.2f} ms{error}", file=sys.stderr)
        return row


def measure(bench: Bench) -> tuple[dict[str, list[Row]], float]:
    """Every run, keyed "A/<side>/<concurrency>" or "B/<shadow>/<half|sat>"; and S in req/s."""
    runs: dict[str, list[Row]] = {}
    repeats = bench.args.repeats
    for index, conc in enumerate(CONCURRENCY):
        for side in abba(list(SIDES_A), repeats, index):
            candidate, canary, cohorts = SIDES_A[side]
            bench.configure(candidate, canary, 0, cohorts)
            runs.setdefault(f"A/{side}/{conc}", []).append(bench.run("A", side, conc))
    s = 0.0  # S: the best shadow-off req/s at saturation, measured first
    for name, settings in (("sat", [x for x in SHADOWS if "slow" not in x]), ("half", [*SHADOWS])):
        for setting in abba(settings, repeats, name == "half"):
            bench.configure(SHADOWS[setting][0], 0, SHADOWS[setting][1], False)
            conc, rate = (OPEN_THREADS, 0.5 * s) if name == "half" else (16, 0.0)
            row = bench.run(f"B {name:<4}", setting, conc, rate)
            runs.setdefault(f"B/{setting}/{name}", []).append(row)
        s = s or max(r.load.rps for r in runs["B/off/sat"])
    bench.configure(None, 0, 0, False)
    return runs, s


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def render(runs: dict[str, list[Row]], s: float, args: argparse.Namespace) -> str:
    """The two tables and a verdict per target. Best run: most req/s; open loop: lowest p99."""
    best = {
        k: min(v, key=lambda r: r.load.p99_ms)
        if k.endswith("half")
        else max(v, key=lambda r: r.load.rps)
        for k, v in runs.items()
    }
    out = [
        f"A. Routing cost: keyed requests, closed loop, best of {args.repeats} runs of "
        f"{args.duration:g} s. rollout: v3 at 5 %; cohort: the same plus 2 cohort rules",
        f"conc | {'no rollout':^20} | {'rollout 5 %':^28} | {'rollout + cohort rules':^28} "
        "| server µs/req  | other | req/s of every run (none | rollout | cohort)",
        f"     | {'req/s   p50   p99':>20} | {'req/s   p50   p99  ratio':>26}   | "
        f"{'req/s   p50   p99  ratio':>26}   | none roll  coh | cores |",
    ]
    misses: list[str] = []
    for conc in CONCURRENCY:
        base, cells = best[f"A/none/{conc}"].load, []
        for side in SIDES_A:
            ld = best[f"A/{side}/{conc}"].load
            cell = f"{ld.rps:6.0f} {ld.p50_ms:5.2f} {ld.p99_ms:5.2f}"
            if side != "none":
                ratio = _ratio(ld.rps, base.rps)
                cell += f" {ratio:6.3f}" + (" <" if ratio < ROUTING_TARGET else "  ")
                if side == "rollout" and ratio < ROUTING_TARGET:
                    misses.append(f"c={conc} ({ratio:.3f})")
            cells.append(f"{cell:>20}" if side == "none" else f"{cell:>28}")
        cpu = " ".join(f"{best[f'A/{side}/{conc}'].server_us:4.0f}" for side in SIDES_A)
        every = " | ".join(
            ", ".join(f"{r.load.rps:.0f}" for r in runs[f"A/{side}/{conc}"]) for side in SIDES_A
        )
        other = max(r.other for side in SIDES_A for r in runs[f"A/{side}/{conc}"])
        out.append(f"{conc:4d} | " + " | ".join(cells) + f" | {cpu} | {other:5.2f} | {every}")
    verdict = "met" if not misses else "NOT met at " + ", ".join(misses)
    out += [
        f"target: rollout >= {ROUTING_TARGET}x no-rollout throughput: {verdict}",
        "",
        f"B. Shadow cost: S = {s:.0f} req/s (closed loop c=16, shadow off); half = open loop at "
        f"{0.5 * s:.0f} req/s on {OPEN_THREADS} threads, latency from the scheduled send; "
        "sat = closed loop c=16",
        "load shadow       |  req/s  p50 ms  p99 ms p99/off rps/off lag p99 | server µs "
        "| sampled completed dropped timeouts maxq | other | p99 of every run",
    ]
    for name in ("half", "sat"):
        base = best[f"B/off/{name}"].load
        for setting in [x for x in SHADOWS if f"B/{x}/{name}" in best]:
            row = best[f"B/{setting}/{name}"]
            ld, sh = row.load, row.shadow
            out.append(
                f"{name:<4} {setting:<12} | {ld.rps:6.0f} {ld.p50_ms:7.2f} {ld.p99_ms:7.2f} "
                f"{_ratio(ld.p99_ms, base.p99_ms):7.3f} {_ratio(ld.rps, base.rps):7.3f} "
                f"{ld.lag_p99_ms:7.2f} | {row.server_us:9.0f} | {sh['sampled']:7d} "
                f"{sh['completed']:9d} {sh['dropped']:7d} {sh['timeouts']:8d} {sh['max_depth']:4d}"
                f" | {row.other:5.2f} | "
                + ", ".join(f"{r.load.p99_ms:.2f}" for r in runs[f"B/{setting}/{name}"])
            )
    for setting in ("100% v3", "100% v4 slow"):
        ratio = _ratio(best[f"B/{setting}/half"].load.p99_ms, best["B/off/half"].load.p99_ms)
        ok = "met" if ratio <= P99_TARGET else "NOT met"
        out.append(f"target: half load, {setting}: p99 <= {P99_TARGET}x off: {ok} ({ratio:.3f})")
    sat = best["B/100% v3/sat"]
    ratio, dropped = _ratio(sat.load.rps, best["B/off/sat"].load.rps), sat.shadow["dropped"]
    ok = "met" if dropped > 0 and ratio >= SAT_TARGET else "NOT met"
    out.append(
        f"target: saturation, 100% v3: sheds (dropped {dropped}, need > 0) and primary "
        f"throughput >= {SAT_TARGET}x off ({ratio:.3f}): {ok}"
    )
    other = max(r.other for rows in runs.values() for r in rows)
    if other > 0.1:
        out.append(f"warning: other processes kept up to {other:.2f} cores busy during a run")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rollout_shadow", description=__doc__
    )
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting, alternated")
    parser.add_argument("--quick", action="store_true", help="1 s runs, one each (smoke test)")
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    add_set_option(parser, "shadow_max_busy=0.1")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.repeats = 1.0, 0.3, 1
    if args.repeats < 1 or args.duration <= 0:
        parser.error("--repeats must be at least 1 and --duration positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    described = describe(machine())
    settings = {"metrics_port": 0, "admin_tokens": {"bench": TOKEN},
                "models": {MODEL: {"stable": "2"}}, **overrides(args.set)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="canaryserve-rollout-") as tmp:
        build_repository(Path(tmp) / "models")
        with serving(Path(tmp), settings) as app, LoadChild() as child:
            bench = Bench(app, child, args)
            try:
                runs, s = measure(bench)
            finally:
                bench.admin.close()
    config = app.config
    server = (
        f"classifier v2 stable, batch 1; server: workers {config.workers}, intra_op_threads 1, "
        f"shadow_workers {config.shadow_workers}, shadow_queue_size {config.shadow_queue_size}, "
        f"shadow_max_busy {config.shadow_max_busy}, stable_trace_ratio "
        f"{config.stable_trace_ratio}"
    )
    print(f"{server}\nmachine: {described}\n\n{render(runs, s, args)}")
    if args.json is not None:
        settings_ = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        document: dict[str, Any] = {"settings": settings_, "server": server}
        document.update(machine=described, saturation_rps=s)
        document["runs"] = {k: [asdict(r) for r in rows] for k, rows in runs.items()}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
