"""What containment costs and what it holds: process isolation per call, a 1 GiB candidate.

    python -m benchmarks.isolation [--duration 3] [--repeats 2]

A. In process (`timeit`, best of 5): one run of the bundled classifier ([1, 4]) and of the mlp
   ([1, 256] and [16, 256]) through an OnnxRunner, through one that shrinks its arena after
   each run (a candidate's default) and through an IsolatedRunner (the session in a child
   process, tensors through shared memory), one onnxruntime thread each.
B. Served (the serving benchmark's harness: load generator on one core, servers on the other,
   closed loop, --repeats runs per side in ABBA order, best run): the classifier and the mlp
   at 4 clients, stable with `isolation = "none"` (the default) and `"process"`.
C. A candidate that allocates 1 GiB per call (classifier v2 plus a 1 GiB Expand times zero) at
   50 % canary under 4 clients for --duration s, three servers: in process with arena
   shrinkage off, in process with the defaults (shrinkage on), and `candidate_isolation =
   "process"` with `memory_budget_mb = 512`. Reports the server process's RSS before, its peak
   and after, the candidate process's RSS, the calls that failed and the fallbacks.

Every figure is printed with the machine's other load. Not a gate; see docs/scheduling.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import timeit
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.harness import LoadChild, abba, describe, machine, pin_process, serving, split_cores
from benchmarks.load import Result, Spec
from client.admin import AdminClient
from models.build import build_classifier_hungry, build_mlp, build_repository
from server.serving.isolated import ChildSettings, IsolatedRunner
from server.serving.roles import RoleRunner
from server.serving.runner import Arrays, OnnxRunner

TOKEN = "isolation"


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s(pid: int | None) -> float:
    """CPU seconds process `pid` has used (0 for None)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid(app: Any, model: str, version: str) -> int | None:
    """The pid of the version's isolated process, or None when it runs in process."""
    runner = app.registry.get(model, version).runner
    inner = runner.inner if isinstance(runner, RoleRunner) else runner
    pid: int | None = getattr(inner, "pid", None)
    return pid


def per_call(root: Path) -> None:
    print("A. per call, in process (timeit, best of 5), one onnxruntime thread")
    print("model        shape      | in process us | + arena shrinkage us | isolated us | added us")
    rng = np.random.default_rng(0)
    cases = [("classifier", root / "classifier" / "2" / "model.onnx", [1, 4]),
             ("mlp", root / "mlp" / "1" / "model.onnx", [1, 256]),
             ("mlp", root / "mlp" / "1" / "model.onnx", [16, 256])]  # fmt: skip
    for name, path, shape in cases:
        feeds: Arrays = {"input": rng.standard_normal(shape).astype(np.float32)}
        local = OnnxRunner(path, 1)
        shrinking = OnnxRunner(path, 1, shrink_arena=True)
        isolated = IsolatedRunner(path, ChildSettings(intra_op_threads=1))
        try:
            out = [o.name for o in local.signature.outputs]
            assert np.array_equal(isolated.run(out, feeds)[0], local.run(out, feeds)[0])
            times = []
            number = 2000 if name == "classifier" else 300
            for runner in (local, shrinking, isolated):
                calls = timeit.repeat(
                    lambda r=runner, o=out, f=feeds: r.run(o, f),  # type: ignore[misc]
                    number=number,
                    repeat=5,
                )
                times.append(min(calls) / number * 1e6)
        finally:
            isolated.close()
        added = times[2] - times[0]
        print(f"{name:<12} {shape!s:<10} | {times[0]:>13.1f} | {times[1]:>20.1f}"
              f" | {times[2]:>11.1f} | {added:>8.1f}")  # fmt: skip


def served(root: Path, child: LoadChild, args: argparse.Namespace) -> None:
    print(
        f"\nB. served, closed loop, 4 clients, {args.duration:g} s, best of {args.repeats} (ABBA)"
    )
    print("model        isolation | req/s  | p50 ms | p99 ms | server CPU us/call | other load")
    print("  (server CPU: the server process plus, isolated, the version's process)")
    for model, shape in (("classifier", [1, 4]), ("mlp", [1, 256])):
        best: dict[str, Result] = {}
        for isolation in abba(["none", "process"], args.repeats):
            settings = {"admin_tokens": {"ops": TOKEN}, "models": {model: {"isolation": isolation}}}
            with serving(root, settings) as app:
                pid = child_pid(app, model, app.dataplane.table.models[model].stable)
                used = cpu_s(pid)
                result = child.measure(
                    Spec(kind="grpc", model=model, shape=shape, concurrency=4,
                         duration=args.duration, warmup=0.5, target=f"127.0.0.1:{app.port}")
                )  # fmt: skip
                result.server_cpu_s += cpu_s(pid) - used
            del app
            if isolation not in best or result.rps > best[isolation].rps:
                best[isolation] = result
        for isolation, r in best.items():
            cpu = r.server_cpu_s / r.total_calls * 1e6 if r.total_calls else 0.0
            errors = f" errors {r.errors}" if r.errors else ""
            print(f"{model:<12} {isolation:<9} | {r.rps:>6.0f} | {r.p50_ms:>6.2f}"
                  f" | {r.p99_ms:>6.2f} | {cpu:>18.0f} | {r.other_load:.2f}{errors}")  # fmt: skip


HUNGRY: dict[str, dict[str, Any]] = {
    "in process, shrinkage off": {"candidate_arena_shrinkage": False},
    "in process (defaults)": {},
    "process, budget 512 MiB": {"candidate_isolation": "process", "memory_budget_mb": 512},
}


def hungry(tmp: Path, child: LoadChild, args: argparse.Namespace) -> None:
    print(f"\nC. a 1 GiB-per-call candidate at 50 % canary, 4 clients, {args.duration:g} s")
    print(
        "  (server RSS: before the server starts, its peak while it loads and serves, at the end)"
    )
    print("scenario                   | server RSS before  peak  after MiB | candidate"
          " process MiB | failed calls | fallbacks | other load")  # fmt: skip
    for name, extra in HUNGRY.items():
        root = tmp / name.replace(" ", "-").replace(",", "")
        shutil.copytree(tmp / "models", root / "models")
        build_classifier_hungry(root / "models" / "classifier" / "5" / "model.onnx", 1024, 2)
        settings = {"admin_tokens": {"ops": TOKEN},
                    "models": {"classifier": {"stable": "2", **extra}}}  # fmt: skip
        gc.collect()
        before = rss_mib()
        peak = [before]
        done = threading.Event()

        def sample(peak: list[float] = peak, done: threading.Event = done) -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], rss_mib())

        sampler = threading.Thread(target=sample)
        sampler.start()
        with serving(root, settings) as app:
            target = f"127.0.0.1:{app.port}"
            with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
                admin.start("classifier", "5", canary_ppm=500_000, no_guard=True)
            result = child.measure(
                Spec(kind="grpc", model="classifier", shape=[1, 4], concurrency=4,
                     duration=args.duration, warmup=0.5, target=target, keys="random")
            )  # fmt: skip
            done.set()
            sampler.join()
            after = rss_mib()
            pid = child_pid(app, "classifier", "5")
            candidate = f"{rss_mib(pid):.0f}" if pid else "-"
            scheduler = app.schedulers.find("classifier", "5")
            fallbacks = scheduler.stats.fallbacks if scheduler else 0
            del scheduler
        del app  # its sessions (and their arenas) go with it
        print(f"{name:<26} | {before:>17.0f} {peak[0]:>5.0f} {after:>6.0f}     | {candidate:>21}"
              f" | {result.errors:>12} | {fallbacks:>9} | {result.other_load:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.isolation", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe(machine()))
    cores = split_cores(True)
    with tempfile.TemporaryDirectory(prefix="canaryserve-isolation-") as name:
        tmp = Path(name)
        build_repository(tmp / "models")
        build_mlp(tmp / "models" / "mlp" / "1" / "model.onnx")
        if cores is not None:
            pin_process("self", cores[1])
        per_call(tmp / "models")
        with LoadChild(cores) as child:
            served(tmp, child, args)
            hungry(tmp, child, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
