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
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from benchmarks.baseline import BaselineServer
from benchmarks.load import Result, Spec
from benchmarks.report import SIDES, TARGET, Point, render
from models.build import build_mlp
from server.app import App
from server.config import Config, bundled_models_dir, load_config

__all__ = ["MODELS", "LoadChild", "build_repository", "main", "measure"]

#: model name -> shape of its single FP32 input "input" (batch 1).
MODELS: dict[str, list[int]] = {"classifier": [1, 4], "mlp": [1, 256]}
INTRA_OP_THREADS = 1
REPO_ROOT = Path(__file__).resolve().parents[1]


class LoadChild:
    """The load generator process: one JSON spec in, one JSON result out."""

    def __init__(self, cores: tuple[set[int], set[int]] | None = None) -> None:
        self._cores = cores
        path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def measure(self, spec: Spec) -> Result:
        if self._cores is not None:
            # Every thread the child has now (its client threads are started per spec, by
            # the main thread, so they inherit). Raw runs get every core: the servers are idle.
            client, servers = self._cores
            pin_process(self._proc.pid, client | servers if spec.kind == "raw" else client)
        stdin, stdout = self._pipes()
        stdin.write(json.dumps(asdict(spec)) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited (code {self._proc.poll()})")
        return Result(**json.loads(line))

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def close(self) -> None:
        stdin, _ = self._pipes()
        stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def build_repository(root: Path) -> dict[str, Path]:
    """The benchmark's model repository; returns model name -> model file."""
    classifier = root / "classifier" / "1" / "model.onnx"
    classifier.parent.mkdir(parents=True)
    shutil.copyfile(bundled_models_dir() / "classifier" / "1" / "model.onnx", classifier)
    mlp = root / "mlp" / "1" / "model.onnx"
    mlp.parent.mkdir(parents=True)
    build_mlp(mlp, seed=0)
    return {"classifier": classifier, "mlp": mlp}


def split_cores(pin: bool) -> tuple[set[int], set[int]] | None:
    """(load generator CPUs, server CPUs): the first usable core, and the rest; None when
    not pinning (asked not to, fewer than two usable cores, or no sched_setaffinity)."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def pin_process(pid: int | str, cpus: set[int]) -> None:
    """Move every thread of process `pid` ("self": this one) onto `cpus`; threads it starts
    later inherit the set of the thread that starts them."""
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tasks = [0 if pid == "self" else int(pid)]
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(task, cpus)


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _run(child: LoadChild, spec: Spec, label: str) -> Result:
    """One run, with this process's CPU time and other processes' load over it."""
    print(f" {label} ...", end="", flush=True, file=sys.stderr)
    busy, wall, cpu = _busy_seconds(), time.monotonic(), time.process_time()
    result = child.measure(spec)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    if spec.kind == "grpc":
        result.server_cpu_s = cpu
    after = _busy_seconds()
    if busy is not None and after is not None and wall > 0:
        others = (after - busy) - cpu - result.client_cpu_s
        result.other_load = round(max(others, 0.0) / wall, 2)
    return result


def measure(
    child: LoadChild,
    args: argparse.Namespace,
    targets: dict[str, str],
    paths: dict[str, Path],
) -> list[Point]:
    """Every point, in order; baseline and canaryserve alternate (ABBA) so drift favours neither."""
    points: list[Point] = []
    index = 0
    for model in args.models:
        common: dict[str, Any] = {"model": model, "shape": MODELS[model]}
        common.update(duration=args.duration, warmup=args.warmup)
        for concurrency in args.concurrency:
            common["concurrency"] = concurrency
            label = f"{model} c={concurrency}"
            print(f"  {label:<16}", end="", flush=True, file=sys.stderr)
            raw_spec = Spec(
                kind="raw", path=str(paths[model]), intra_op_threads=INTRA_OP_THREADS, **common
            )
            raw = _run(child, raw_spec, "raw")
            runs: dict[str, list[Result]] = {side: [] for side in SIDES}
            for repeat in range(args.repeats):
                order = SIDES if (index + repeat) % 2 == 0 else SIDES[::-1]
                for side in order:
                    spec = Spec(kind="grpc", target=targets[side], **common)
                    runs[side].append(_run(child, spec, side))
            print(file=sys.stderr)
            points.append(Point.of(model, concurrency, raw, runs))
            index += 1
    return points


def _machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {name: metadata.version(name) for name in ("grpcio", "onnxruntime", "numpy")}
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        **versions,
    }


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
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a canaryserve config override, VALUE in TOML syntax (e.g. stable_trace_ratio=0.1)",
    )
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
    machine = _machine()  # before pinning, which narrows the usable cores
    machine["pinning"] = (
        f"load generator on CPU {_cpus(cores[0])}, servers on CPU {_cpus(cores[1])} "
        "(raw session.run on every core)"
        if cores
        else "not pinned"
    )
    before = os.sched_getaffinity(0) if cores is not None else None
    if cores is not None:
        pin_process("self", cores[1])
    try:
        return _main(args, cores, machine)
    finally:
        if before is not None:
            pin_process("self", before)


def _main(
    args: argparse.Namespace,
    cores: tuple[set[int], set[int]] | None,
    machine: dict[str, Any],
) -> int:
    with tempfile.TemporaryDirectory(prefix="canaryserve-bench-") as tmp:
        paths = build_repository(Path(tmp) / "models")
        settings: dict[str, Any] = {
            "models_dir": Path(tmp) / "models",
            "state_dir": Path(tmp) / "state",
            "port": 0,
            "intra_op_threads": INTRA_OP_THREADS,
        }
        if "metrics_port" in {f.name for f in dataclasses.fields(Config)}:
            settings["metrics_port"] = 0  # the /metrics endpoint on a free port, not 8002
        settings.update(tomllib.loads("\n".join(args.set)))
        config = load_config(None, settings)
        app = App(config)
        baseline = BaselineServer(
            paths,
            workers=config.workers,
            max_message_bytes=config.max_message_bytes,
            intra_op_threads=config.intra_op_threads,
        )
        # --self-check: a second baseline server in canaryserve's place (canaryserve is still
        # started, so the process holds the same threads): the spread of the ratio this prints
        # is the benchmark's own noise on this machine.
        twin = None
        if args.self_check:
            twin = BaselineServer(
                paths,
                workers=config.workers,
                max_message_bytes=config.max_message_bytes,
                intra_op_threads=config.intra_op_threads,
            )
        child: LoadChild | None = None
        try:
            app_port = app.start()
            targets = {
                "canaryserve": f"127.0.0.1:{twin.start() if twin else app_port}",
                "baseline": f"127.0.0.1:{baseline.start()}",
            }
            child = LoadChild(cores)
            points = measure(child, args, targets, paths)
        finally:
            if child is not None:
                child.close()
            baseline.stop(0)
            if twin is not None:
                twin.stop(0)
            app.stop(0)
    server = {
        "workers": config.workers,
        "max_message_bytes": config.max_message_bytes,
        "intra_op_threads": config.intra_op_threads,
        "inter_op_threads": 1,
    }
    if args.self_check:
        print("SELF-CHECK: the canaryserve column is a second baseline server (A/A run)")
    print(render(points, machine, server, args))
    if args.json is not None:
        document = {
            "machine": machine,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "server": server,
            "target": TARGET,
            "points": [p.as_json() for p in points],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
