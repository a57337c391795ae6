"""The benchmark's results: one `Point` per (model, concurrency), and the printed report.

Throughput and latency come from each side's best run (the run least disturbed by the rest of
the machine); CPU per request is summed over all of a side's runs, which makes it the steadier
figure on a small, shared machine. The paired ratios divide each canaryserve run by the
baseline run next to it in time (same repeat), so a slow minute of the machine hits both sides
of a pair; their median is a second, outlier-proof estimate of cs/base.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import describe
from benchmarks.load import Result

__all__ = ["OTHER_LOAD_WARN", "SIDES", "TARGET", "Point", "render"]

#: canaryserve throughput must be at least this fraction of the baseline's at every point.
TARGET = 0.95
SIDES = ("baseline", "canaryserve")
#: Above this many cores busy with other processes during a run, the report warns.
OTHER_LOAD_WARN = 0.1


def _cpu_us(results: Sequence[Result], server: bool) -> float:
    calls = sum(r.total_calls for r in results)
    cpu = sum(r.server_cpu_s if server else r.client_cpu_s for r in results)
    return cpu / calls * 1e6 if calls else 0.0


@dataclass
class Point:
    """One (model, concurrency) point: the best run of each side, every run's req/s, CPU."""

    model: str
    concurrency: int
    raw: Result
    baseline: Result
    canaryserve: Result
    runs: dict[str, list[float]] = field(default_factory=dict)  # side -> req/s of each run
    server_us: dict[str, float] = field(default_factory=dict)  # side -> server CPU µs/request
    client_us: dict[str, float] = field(default_factory=dict)  # side -> client CPU µs/request
    other_load: float = 0.0  # most cores other processes kept busy during any run of the point

    @classmethod
    def of(
        cls, model: str, concurrency: int, raw: Result, runs: Mapping[str, Sequence[Result]]
    ) -> Point:
        best = {side: max(results, key=lambda r: r.rps) for side, results in runs.items()}
        return cls(
            model,
            concurrency,
            raw,
            best["baseline"],
            best["canaryserve"],
            {side: [round(r.rps, 1) for r in results] for side, results in runs.items()},
            {side: round(_cpu_us(results, True), 1) for side, results in runs.items()},
            {side: round(_cpu_us(results, False), 1) for side, results in runs.items()},
            max(r.other_load for r in (raw, *(r for rs in runs.values() for r in rs))),
        )

    @property
    def vs_baseline(self) -> float:
        """canaryserve / baseline throughput."""
        return self.canaryserve.rps / self.baseline.rps if self.baseline.rps else 0.0

    @property
    def paired(self) -> list[float]:
        """canaryserve / baseline req/s of each repeat (the two runs adjacent in time)."""
        pairs = zip(self.runs.get("canaryserve", []), self.runs.get("baseline", []), strict=False)
        return [cs / base for cs, base in pairs if base]

    @property
    def paired_median(self) -> float:
        return statistics.median(self.paired) if self.paired else 0.0

    @property
    def vs_raw(self) -> float:
        """canaryserve / raw session.run throughput."""
        return self.canaryserve.rps / self.raw.rps if self.raw.rps else 0.0

    @property
    def cpu_ratio(self) -> float:
        """canaryserve / baseline server CPU per request."""
        base = self.server_us.get("baseline", 0.0)
        return self.server_us.get("canaryserve", 0.0) / base if base else 0.0

    def as_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        ratios = {
            "vs_baseline": self.vs_baseline,
            "vs_raw": self.vs_raw,
            "paired_ratios": self.paired,
            "paired_median": self.paired_median,
        }
        return {**asdict(self), **ratios, "server_cpu_ratio": self.cpu_ratio}


def _cell(r: Result) -> str:
    return f"{r.rps:>9.0f} {r.p50_ms:>7.3f} {r.p99_ms:>7.3f}"


def _header(machine: Mapping[str, Any], server: Mapping[str, int], args: Any) -> list[str]:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"canaryserve serving benchmark, {stamp}",
        f"machine: {describe(machine)}",
        f"onnxruntime (all three): intra_op_num_threads={server['intra_op_threads']}, "
        "inter_op_num_threads=1, CPUExecutionProvider",
        f"servers: grpc sync, {server['workers']} worker threads, "
        f"{server['max_message_bytes'] // 2**20} MiB message limits, both in the benchmark "
        "process; load generator: child process, closed loop, one channel per client thread",
        f"cores: {machine.get('pinning', 'not pinned')}",
        f"per run: {args.warmup:g} s warm-up + {args.duration:g} s measured; baseline and "
        f"canaryserve {args.repeats} run(s) each, alternated, best kept; raw 1 run",
    ]


def render(
    points: Sequence[Point], machine: Mapping[str, Any], server: Mapping[str, int], args: Any
) -> str:
    """The printed report: settings, throughput table, CPU table, every run, the verdict."""
    lines = _header(machine, server, args)
    lines += [
        "",
        f"{'':17}| {'raw session.run':^25} | {'baseline gRPC':^25} | {'canaryserve':^25} |",
        f"{'model':<11}{'conc':>5} |"
        + f" {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} |" * 3
        + f" {'cs/base':>7} {'cs/raw':>6}",
    ]
    lines.append("-" * len(lines[-1]))
    for p in points:
        flag = "" if p.vs_baseline >= TARGET else f"  < {TARGET}"
        lines.append(
            f"{p.model:<11}{p.concurrency:>5} | {_cell(p.raw)} | {_cell(p.baseline)} | "
            f"{_cell(p.canaryserve)} | {p.vs_baseline:>7.3f} {p.vs_raw:>6.3f}{flag}"
        )
    lines += [
        "",
        "CPU per request, µs, over all runs of a side (server: the serving process; client: the",
        "load generator); other: most cores busy with other processes during any run of the point",
        f"{'model':<11}{'conc':>5} | {'server base':>11} {'server cs':>9} {'cs-base':>7} "
        f"{'cs/base':>7} | {'client base':>11} {'client cs':>9} | {'other':>5} | paired cs/base "
        "median (min-max) | req/s of every run (base | cs)",
    ]
    lines.append("-" * len(lines[-1]))
    for p in points:
        sb, sc = p.server_us["baseline"], p.server_us["canaryserve"]
        cb, cc = p.client_us["baseline"], p.client_us["canaryserve"]
        runs = " | ".join(", ".join(f"{x:.0f}" for x in p.runs[side]) for side in SIDES)
        pairs = (
            f"{p.paired_median:.3f} ({min(p.paired, default=0):.3f}-{max(p.paired, default=0):.3f})"
        )
        lines.append(
            f"{p.model:<11}{p.concurrency:>5} | {sb:>11.1f} {sc:>9.1f} {sc - sb:>+7.1f} "
            f"{p.cpu_ratio:>7.3f} | {cb:>11.1f} {cc:>9.1f} | {p.other_load:>5.2f} | "
            f"{pairs:<24} | {runs}"
        )
    busy = [p for p in points if p.other_load > OTHER_LOAD_WARN]
    if busy:
        lines.append(
            f"WARNING: other processes kept > {OTHER_LOAD_WARN} cores busy during "
            + ", ".join(f"{p.model} c={p.concurrency}" for p in busy)
            + "; those figures are disturbed, run again on a quiet machine"
        )
    for p in points:
        for side, r in zip(("raw", *SIDES), (p.raw, p.baseline, p.canaryserve), strict=True):
            if r.errors:
                lines.append(
                    f"ERRORS {p.model} c={p.concurrency} {side}: {r.errors} ({r.first_error})"
                )
    below = [p for p in points if p.vs_baseline < TARGET]
    verdict = "met at every point"
    if below:
        verdict = "NOT met at " + ", ".join(
            f"{p.model} c={p.concurrency} ({p.vs_baseline:.3f})" for p in below
        )
    paired_below = [p for p in points if p.paired_median < TARGET]
    paired = "met at every point"
    if paired_below:
        paired = "NOT met at " + ", ".join(
            f"{p.model} c={p.concurrency} ({p.paired_median:.3f})" for p in paired_below
        )
    lines += [
        "",
        f"target canaryserve >= {TARGET}x baseline throughput (best runs): {verdict}",
        f"same target on the median of paired runs: {paired}",
    ]
    return "\n".join(lines)
