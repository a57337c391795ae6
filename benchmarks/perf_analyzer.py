"""Drive canaryserve with Triton's own load generator, perf_analyzer.

    python -m benchmarks.perf_analyzer [--concurrency 1,4,16] [--models classifier,mlp]
                                       [--measurement-ms 3000]

perf_analyzer is a C++ program that ships inside the Linux x86_64 `tritonclient` wheels up to
2.60; this script takes it from the 2.50.0 wheel, the newest one built for glibc 2.36 (2.52
and later need glibc 2.38). It needs `libcudart.so.12` (from the `nvidia-cuda-runtime-cu12`
wheel; no GPU is used) and Debian's `libb64-0d`. Everything goes under `.bench/perf_analyzer/`
on first use; the Debian package is installed with apt-get when the script runs as root.

The run serves the serving benchmark's repository (bundled classifier version 1, the
256→1024→1024→10 MLP) from canaryserve on a free port in this process and runs perf_analyzer
once per (model, concurrency), printing its client- and server-side figures. The server-side
breakdown comes from canaryserve's ModelStatistics (queue, compute input/infer/output).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks.harness import REPO_ROOT, describe, machine, serving
from benchmarks.serving import INTRA_OP_THREADS, MODELS, build_repository

__all__ = ["ensure_perf_analyzer", "main"]

TRITONCLIENT = os.environ.get("PERF_ANALYZER_TRITONCLIENT", "2.50.0")
HOME = REPO_ROOT / ".bench" / "perf_analyzer"
WANTED = ("Throughput", "Avg latency", "p50 latency", "p99 latency", "Avg request latency")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def _have_libb64() -> bool:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    return "libb64.so.0d" in out


def ensure_perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary and the environment it runs in; installs what is missing."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise SystemExit("perf_analyzer ships for Linux x86_64 only")
    binary = HOME / "bin" / "perf_analyzer"
    if not binary.exists():
        wheels = HOME / "wheels"
        _pip("download", "--no-deps", "--only-binary=:all:", "--platform", "manylinux1_x86_64",
             "-d", str(wheels), f"tritonclient=={TRITONCLIENT}")  # fmt: skip
        wheel = next(wheels.glob(f"tritonclient-{TRITONCLIENT}-*.whl"))
        member = f"tritonclient-{TRITONCLIENT}.data/data/bin/perf_analyzer"
        binary.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(binary, "wb") as dst:
            shutil.copyfileobj(src, dst)
        binary.chmod(0o755)
    cuda = HOME / "cuda"
    libdir = cuda / "nvidia" / "cuda_runtime" / "lib"
    if not (libdir / "libcudart.so.12").exists():
        _pip("install", "--quiet", "--target", str(cuda), "nvidia-cuda-runtime-cu12==12.*")
    if not _have_libb64():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit("perf_analyzer needs libb64.so.0d: install Debian's libb64-0d")
        subprocess.run(["apt-get", "install", "-y", "-q", "libb64-0d"], check=True)
    path = os.pathsep.join(filter(None, [str(libdir), os.environ.get("LD_LIBRARY_PATH")]))
    return binary, dict(os.environ, LD_LIBRARY_PATH=path)


def run_point(
    binary: Path,
    env: dict[str, str],
    target: str,
    model: str,
    concurrency: int,
    window_ms: int,
    batching: bool = False,
) -> dict[str, str]:
    """One perf_analyzer run; returns the figures of its report, by label.

    A model that batches reports max_batch_size > 0 and fixed dims without the batch
    dimension, so perf_analyzer needs no --shape (it sends batch 1); others get the full shape.
    """
    shape = ",".join(str(d) for d in MODELS[model])
    cmd = [str(binary), "-i", "grpc", "-u", target, "-m", model,
           *([] if batching else ["--shape", f"input:{shape}"]),
           "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-interval", str(window_ms)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
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
    args = parser.parse_args(argv)
    binary, env = ensure_perf_analyzer()
    described = describe(machine())
    with tempfile.TemporaryDirectory(prefix="canaryserve-pa-") as tmp:
        build_repository(Path(tmp) / "models")
        with serving(Path(tmp), {"intra_op_threads": INTRA_OP_THREADS}) as app:
            target = f"127.0.0.1:{app.port}"
            print(f"perf_analyzer from tritonclient {TRITONCLIENT} against canaryserve {target}")
            print(f"machine: {described}")
            for model in args.models.split(","):
                runner = app.registry.get(model, "1").runner
                assert runner is not None
                batching = app.schedulers.max_batch_size(model, runner) > 0
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    f = run_point(
                        binary, env, target, model, concurrency, args.measurement_ms, batching
                    )
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
