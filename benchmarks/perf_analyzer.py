"""Drive canaryserve with Triton's own load generator, perf_analyzer.

    python -m benchmarks.perf_analyzer [--concurrency 1,4,16] [--models classifier,mlp]
                                       [--measurement-ms 3000] [--stability 10]

perf_analyzer is the C++ program of the Linux x86_64 `tritonclient` 2.50.0 wheel, installed
with the libraries it needs by .ci/install-perf-analyzer.sh as .tools/perf_analyzer/perf_analyzer
(a wrapper that sets LD_LIBRARY_PATH); this script runs that installer when the wrapper is
missing (it apt-gets Debian's libb64-0d, so as root).

The run serves the serving benchmark's repository (bundled classifier version 1, the
256→1024→1024→10 MLP) from canaryserve on a free port in this process and runs perf_analyzer
once per (model, concurrency), printing its client- and server-side figures. The server-side
breakdown comes from canaryserve's ModelStatistics (queue, compute input/infer/output).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import REPO_ROOT, describe, machine, serving
from benchmarks.serving import INTRA_OP_THREADS, MODELS, build_repository

__all__ = ["ensure_perf_analyzer", "main"]

WRAPPER = REPO_ROOT / ".tools" / "perf_analyzer" / "perf_analyzer"
INSTALLER = REPO_ROOT / ".ci" / "install-perf-analyzer.sh"
WANTED = ("Throughput", "Avg latency", "p50 latency", "p99 latency", "Avg request latency")


def ensure_perf_analyzer() -> Path:
    """The perf_analyzer wrapper, installed (or brought to the pinned version) by the project's
    installer, which changes nothing and asks no registry when it is already in place."""
    done = subprocess.run(["bash", str(INSTALLER)], check=False)
    if done.returncode != 0:
        raise SystemExit(f"perf_analyzer could not be installed ({INSTALLER} said why above)")
    return WRAPPER


def run_point(
    binary: Path,
    target: str,
    model: str,
    concurrency: int,
    window_ms: int,
    batching: bool = False,
    stability: int = 10,
) -> dict[str, str]:
    """One perf_analyzer run; returns the figures of its report, by label.

    A model that batches reports max_batch_size > 0 and fixed dims without the batch
    dimension, so perf_analyzer needs no --shape (it sends batch 1); others get the full shape.
    """
    shape = ",".join(str(d) for d in MODELS[model])
    cmd = [str(binary), "-i", "grpc", "-u", target, "-m", model,
           *([] if batching else ["--shape", f"input:{shape}"]),
           "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-interval", str(window_ms),
           "--stability-percentage", str(stability)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"perf_analyzer failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    figures: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        label, _, value = line.strip().partition(": ")
        if label in WANTED and label not in figures:
            figures[label] = value
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf_analyzer", description=__doc__)
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated, e.g. 1,4,16")
    parser.add_argument("--models", default=",".join(MODELS), help="classifier,mlp")
    parser.add_argument("--measurement-ms", type=int, default=3000, help="per window")
    parser.add_argument(
        "--stability",
        type=int,
        default=10,
        help="perf_analyzer's --stability-percentage (its default 10; a busy machine needs more)",
    )
    args = parser.parse_args(argv)
    binary = ensure_perf_analyzer()
    described = describe(machine())
    with tempfile.TemporaryDirectory(prefix="canaryserve-pa-") as tmp:
        build_repository(Path(tmp) / "models")
        with serving(Path(tmp), {"intra_op_threads": INTRA_OP_THREADS}) as app:
            target = f"127.0.0.1:{app.port}"
            print(f"perf_analyzer (tritonclient 2.50.0) against canaryserve {target}")
            print(f"machine: {described}")
            if args.stability != 10:
                print(f"perf_analyzer --stability-percentage {args.stability} (default 10)")
            for model in args.models.split(","):
                runner = app.registry.get(model, "1").runner
                assert runner is not None
                batching = app.schedulers.max_batch_size(model, runner) > 0
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    f = run_point(
                        binary, target, model, concurrency, args.measurement_ms, batching,
                        args.stability,
                    )  # fmt: skip
                    server = re.sub(r"\s+", " ", f.get("Avg request latency", "-"))
                    print(
                        f"{model:<10} c={concurrency:<3} {f.get('Throughput', '-'):>20}  "
                        f"p50 {f.get('p50 latency', '-'):>10}  p99 {f.get('p99 latency', '-'):>10}"
                        f"\n{'':16}server: {server}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
