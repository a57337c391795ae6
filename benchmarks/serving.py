"""Side-by-side serving benchmark: raw `session.run`, a minimal gRPC server, and canaryserve.

    python -m benchmarks.serving [--duration 3] [--warmup 0.5] [--concurrency 1,4,16]
                                 [--models classifier,mlp] [--repeats 5] [--json out.json]
                                 [--set KEY=VALUE] [--self-check] [--no-pin]

One run builds a temporary model repository (the bundled small classifier, version 1, and the
medium MLP 256→1024→1024→10 as model "mlp" version 1), starts canaryserve (`App`, port 0) and
the baseline server (`benchmarks.baseline`) in this process, and drives them from a load
generator in a child process (`python -m benchmarks.load`), so client threads never compete
with the servers for one GIL. With two or more usable cores the load generator is pinned to
the first and the servers to the rest (`--no-pin` lets the scheduler place both), so the
client never takes the servers' core and throughput measures the servers' own work. For
every (model, concurrency) point it measures raw `session.run` once, then baseline and
canaryserve `--repeats` times each in alternating order (ABBA), keeps each side's best run,
and prints a table with the ratios. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.baseline import BaselineServer
from benchmarks.harness import (
    Cores,
    LoadChild,
    abba,
    add_set_option,
    machine,
    overrides,
    pin_process,
    serving,
    split_cores,
)
from benchmarks.load import Result, Spec
from benchmarks.report import SIDES, TARGET, Point, render
from models.build import build_mlp
from server.config import bundled_models_dir

__all__ = ["INTRA_OP_THREADS", "MODELS", "build_repository", "main", "measure", "parse_args"]

#: model name -> shape of its single FP32 input "input" (batch 1).
MODELS: dict[str, list[int]] = {"classifier": [1, 4], "mlp": [1, 256]}
INTRA_OP_THREADS = 1


def build_repository(root: Path) -> dict[str, Path]:
    """The benchmark's model repository; returns model name -> model file."""
    classifier = root / "classifier" / "1" / "model.onnx"
    classifier.parent.mkdir(parents=True)
    shutil.copyfile(bundled_models_dir() / "classifier" / "1" / "model.onnx", classifier)
    mlp = root / "mlp" / "1" / "model.onnx"
    mlp.parent.mkdir(parents=True)
    build_mlp(mlp, seed=0)
    return {"classifier": classifier, "mlp": mlp}


def _run(child: LoadChild, spec: Spec, label: str) -> Result:
    print(f" {label} ...", end="", flush=True, file=sys.stderr)
    return child.measure(spec)


def measure(
    child: LoadChild,
    args: argparse.Namespace,
    targets: dict[str, str],
    paths: dict[str, Path],
) -> list[Point]:
    """Every point, in order; baseline and canaryserve alternate (ABBA) so drift favours neither."""
    points: list[Point] = []
    for index, (model, concurrency) in enumerate(
        (m, c) for m in args.models for c in args.concurrency
    ):
        common: dict[str, Any] = {"model": model, "shape": MODELS[model]}
        common.update(duration=args.duration, warmup=args.warmup, concurrency=concurrency)
        label = f"{model} c={concurrency}"
        print(f"  {label:<16}", end="", flush=True, file=sys.stderr)
        raw_spec = Spec(
            kind="raw", path=str(paths[model]), intra_op_threads=INTRA_OP_THREADS, **common
        )
        raw = _run(child, raw_spec, "raw")
        runs: dict[str, list[Result]] = {side: [] for side in SIDES}
        for side in abba(SIDES, args.repeats, index):
            spec = Spec(kind="grpc", target=targets[side], **common)
            runs[side].append(_run(child, spec, side))
        print(file=sys.stderr)
        points.append(Point.of(model, concurrency, raw, runs))
    return points


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _csv(kind: type[Any]) -> Any:
    def parse(text: str) -> list[Any]:
        return [kind(x) for x in text.split(",") if x.strip()]

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    parser.add_argument("--concurrency", type=_csv(int), default=[1, 4, 16], help="e.g. 1,4,16")
    parser.add_argument("--models", type=_csv(str), default=list(MODELS), help="classifier,mlp")
    parser.add_argument("--repeats", type=int, default=5, help="runs per side per point")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    add_set_option(parser, "stable_trace_ratio=0.1")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the load generator and the servers to separate cores",
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="measure a second baseline in canaryserve's place: the benchmark's own noise",
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    if args.repeats < 1 or min(args.concurrency, default=0) < 1:
        parser.error("--repeats and every --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = split_cores(args.pin)
    described = machine()  # before pinning, which narrows the usable cores
    described["pinning"] = (
        f"load generator on CPU {_cpus(cores[0])}, servers on CPU {_cpus(cores[1])} "
        "(raw session.run on every core)"
        if cores
        else "not pinned"
    )
    before = os.sched_getaffinity(0) if cores is not None else None
    if cores is not None:
        pin_process("self", cores[1])
    try:
        return _main(args, cores, described)
    finally:
        if before is not None:
            pin_process("self", before)


def _main(args: argparse.Namespace, cores: Cores | None, described: dict[str, Any]) -> int:
    with tempfile.TemporaryDirectory(prefix="canaryserve-bench-") as tmp:
        paths = build_repository(Path(tmp) / "models")
        settings = {"metrics_port": 0}  # /metrics: a free port; everything else: the defaults
        with serving(Path(tmp), {**settings, **overrides(args.set)}) as app:
            config = app.config
            limits: dict[str, Any] = {
                "workers": config.workers,
                "max_message_bytes": config.max_message_bytes,
                "intra_op_threads": config.intra_op_threads,
            }
            baseline = BaselineServer(paths, **limits)
            # --self-check: a second baseline server in canaryserve's place (canaryserve is
            # still started, so the process holds the same threads): the spread of the ratio
            # this prints is the benchmark's own noise on this machine.
            twin = BaselineServer(paths, **limits) if args.self_check else None
            try:
                targets = {
                    "canaryserve": f"127.0.0.1:{twin.start() if twin else app.port}",
                    "baseline": f"127.0.0.1:{baseline.start()}",
                }
                with LoadChild(cores) as child:
                    points = measure(child, args, targets, paths)
            finally:
                baseline.stop(0)
                if twin is not None:
                    twin.stop(0)
    server = {**limits, "inter_op_threads": 1}
    if args.self_check:
        print("SELF-CHECK: the canaryserve column is a second baseline server (A/A run)")
    print(render(points, described, server, args))
    if args.json is not None:
        document = {
            "machine": described,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "server": server,
            "target": TARGET,
            "points": [p.as_json() for p in points],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
