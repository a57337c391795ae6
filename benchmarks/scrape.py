"""What /metrics costs: one scrape with N loaded versions, and serving throughput while scraped.

    python -m benchmarks.scrape [--versions 4 16 64] [--duration 5] [--repeats 2]

Scrape cost: one server per N (`App`, port 0, default config but a free metrics port), the
bundled repository with the classifier copied into N versions, each version called a few
times (pinned) so each has its latency histogram, scheduler and usage series; then 200 scrapes
over HTTP from this process, timed end to end (ms per scrape: median and p90) and the body size.

Throughput while scraped: one server (default config, --load-versions versions as above),
closed-loop load from the load generator child process (--concurrency threads, the stable
classifier), runs alternating (ABC CBA) between no scraper; a separate Python process asking
every second for a path that is not there (the harness's own cost); and the same process
scraping /metrics every second, as Prometheus would. Servers run on the cores the load
generator does not (as in benchmarks.serving). Not a gate; see docs/metrics.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    LoadChild,
    abba,
    describe,
    machine,
    pin_process,
    serving,
    split_cores,
)
from benchmarks.load import Result, Spec
from client.inference import InferenceClient
from models.build import build_repository

MODEL = "classifier"
SCRAPER = """
import sys, time, urllib.error, urllib.request
url, period = sys.argv[1], float(sys.argv[2])
while True:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
    except urllib.error.HTTPError:
        pass
    time.sleep(max(0.0, period - (time.monotonic() - start)))
"""


def scrape_ms(port: int, scrapes: int) -> tuple[float, float, int]:
    """Median and p90 milliseconds of one HTTP scrape, and the body's bytes."""
    url = f"http://127.0.0.1:{port}/metrics"
    times, size = [], 0
    for _ in range(scrapes):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            size = len(response.read())
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times))], size


def repository(root: Path, versions: int) -> Path:
    """The bundled repository with the classifier's version 2 copied into versions 1..N."""
    build_repository(root / "models")
    classifier = root / "models" / MODEL
    for old in list(classifier.iterdir()):
        if old.name != "2":
            shutil.rmtree(old)
    for v in range(1, versions + 1):
        if v != 2:
            shutil.copytree(classifier / "2", classifier / str(v))
    return root


def call_each(port: int, versions: int) -> None:
    """A few pinned calls per version, so each has its series."""
    with InferenceClient(f"127.0.0.1:{port}") as c:
        for v in range(1, versions + 1):
            for _ in range(5):
                c.infer(MODEL, {"input": np.zeros((1, 4), np.float32)}, version=str(v))


def cost(tmp: Path, versions: int, scrapes: int) -> None:
    with serving(repository(tmp / f"n{versions}", versions), {"metrics_port": 0}) as app:
        call_each(app.port, versions)
        scrape_ms(app.metrics_port, 20)  # warm
        p50, p90, size = scrape_ms(app.metrics_port, scrapes)
    print(f"{versions:>8} | {p50:>13.2f} | {p90:>6.2f} | {size / 1024:>8.1f}", flush=True)


def throughput(tmp: Path, args: argparse.Namespace) -> None:
    cores = split_cores(True)
    if cores is not None:
        pin_process("self", cores[1])
    root = repository(tmp / "load", args.load_versions)
    # The middle arm asks for a path that is not there every second: the scraper process and the
    # HTTP round trip without the exposition, to tell the scrape's cost from the harness's.
    paths = {"no scraper": None, "404 1/s": "/none", "scraped 1/s": "/metrics"}
    rows: dict[str, list[Result]] = {name: [] for name in paths}
    with LoadChild(cores) as child, serving(root, {"metrics_port": 0}) as app:
        call_each(app.port, args.load_versions)
        for name in abba(list(rows), args.repeats):
            scraper, path = None, paths[name]
            if path is not None:
                url = f"http://127.0.0.1:{app.metrics_port}{path}"
                scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, url, "1.0"])
            try:
                rows[name].append(
                    child.measure(
                        Spec(
                            kind="grpc",
                            model=MODEL,
                            shape=[1, 4],
                            concurrency=args.concurrency,
                            duration=args.duration,
                            warmup=args.warmup,
                            target=f"127.0.0.1:{app.port}",
                        )
                    )
                )
            finally:
                if scraper is not None:
                    scraper.terminate()
                    scraper.wait(5)
    print(
        f"\n{args.load_versions} versions loaded, {args.concurrency} client threads on the"
        f" stable version, closed loop, {args.duration:g} s per run, ABC CBA"
    )
    print("run          | mean req/s | req/s of each run | p99 ms of each run | other load")
    for name, results in rows.items():
        mean = statistics.mean(r.rps for r in results)
        rps = " ".join(f"{r.rps:.0f}" for r in results)
        p99 = " ".join(f"{r.p99_ms:.1f}" for r in results)
        load = max(r.other_load for r in results)
        print(f"{name:<12} | {mean:>10.0f} | {rps} | {p99} | {load:.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scrape", description=__doc__)
    parser.add_argument("--versions", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--load-versions", type=int, default=16, help="versions while loaded")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    described = describe(machine())  # before any pinning
    print(f"machine: {described}; load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="canaryserve-scrape-") as tmp:
        print("versions | scrape p50 ms | p90 ms | body KiB")
        for n in args.versions:
            cost(Path(tmp), n, args.scrapes)
        throughput(Path(tmp), args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
