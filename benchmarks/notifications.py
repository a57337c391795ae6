"""The cost of notifications on serving: throughput and latency with rollout events flowing.

    python -m benchmarks.notifications [--duration 5] [--concurrency 8] [--repeats 3]

One server per run (`App`, port 0, the bundled repository, default config apart from the
webhooks), a manual rollout of classifier v3 at 10 % (without guard rails), and a thread in
this process changing its weight every 0.1 s (ten rollout events a second, each one audit
row, one log line and, with a webhook, one queued delivery) while the load generator child
process drives closed loop traffic with a fresh random routing key per call. Scenarios, run
in ABBA order:

  no webhook     nothing configured (the default): events are logged only;
  receiver       a local HTTP receiver answering 200 (in a process of its own), the events
                 signed (a secret);
  black hole     a receiver that accepts connections and never answers: every delivery
                 waits out its 1 s timeout and is retried, the queue fills and drops.

Prints, per scenario, the median over the repeats of throughput, client p50/p99, the
server's CPU per call, the events delivered / dropped, and the other processes' load.
Servers run on the cores the load generator does not (as in benchmarks.serving). Not a gate;
figures in docs/notifications.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

from benchmarks.harness import REPO_ROOT, LoadChild, abba, pin_process, serving, split_cores
from benchmarks.load import Result, Spec
from benchmarks.receivers import BlackHole
from client.admin import AdminClient
from models.build import build_repository

MODEL, CANDIDATE, TOKEN = "classifier", "3", "notify-bench"
SCENARIOS = ("no webhook", "receiver", "black hole")


@contextmanager
def _events(target: str, every_s: float) -> Iterator[list[int]]:
    """A manual rollout whose weight changes every `every_s` seconds until the block ends."""
    stop = threading.Event()
    count = [0]
    with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
        # No guard rails: under load the latency gate may roll the copy back mid-run.
        admin.start(MODEL, CANDIDATE, canary_ppm=100_000, no_guard=True)

        def run() -> None:
            weights = (110_000, 100_000)
            while not stop.wait(every_s):
                admin.set_weight(MODEL, weights[count[0] % 2])
                count[0] += 1

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield count
        finally:
            stop.set()
            thread.join()


@contextmanager
def _receiver_process() -> Iterator[str]:
    """A receiver answering 200 in a child process (its HTTP work off the server's GIL)."""
    with subprocess.Popen(
        [sys.executable, "-m", "benchmarks.receivers"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            yield child.stdout.readline().strip()
        finally:
            child.stdin.close()
            child.wait(timeout=30)


def _webhooks(name: str, stack: ExitStack) -> dict[str, Any]:
    if name == "receiver":
        url = stack.enter_context(_receiver_process())
        return {"webhooks": [{"url": url, "secret": "bench"}]}
    if name == "black hole":
        hole = stack.enter_context(BlackHole())
        return {"webhooks": [{"url": hole.url, "timeout_seconds": 1.0}]}
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notifications", description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--event-interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    cores = split_cores(True)
    if cores is not None:
        pin_process("self", cores[1])
    print(
        f"closed loop, {args.concurrency} client threads, random keys, {args.duration:g} s per"
        f" run, a rollout event every {args.event_interval:g} s; median of {args.repeats} runs"
    )
    print(
        "scenario     |  req/s | p50 ms | p99 ms | server us/call | events | delivered |"
        " dropped | other load"
    )
    results: dict[str, list[tuple[Result, int, int, int]]] = {s: [] for s in SCENARIOS}
    with (
        tempfile.TemporaryDirectory(prefix="canaryserve-notify-") as tmp,
        LoadChild(cores) as child,
    ):
        build_repository(Path(tmp) / "models")
        for n, name in enumerate(abba(SCENARIOS, args.repeats)):
            root = Path(tmp) / f"run-{n}"
            root.mkdir()
            (root / "models").symlink_to(Path(tmp) / "models")
            with ExitStack() as stack:
                settings = {
                    "admin_tokens": {"ops": TOKEN},
                    "state_dir": root / "state",
                    "notifications": _webhooks(name, stack),
                    "models": {MODEL: {"stable": "2"}},
                }
                app = stack.enter_context(serving(root, settings))
                target = f"127.0.0.1:{app.port}"
                with _events(target, args.event_interval) as count:
                    result = child.measure(
                        Spec(kind="grpc", model=MODEL, shape=[1, 4],
                             concurrency=args.concurrency, duration=args.duration,
                             warmup=args.warmup, target=target, keys="random", seed=n)
                    )  # fmt: skip
                receivers = app.notifier.receivers
                delivered = sum(r.stats.delivered for r in receivers)
                dropped = sum(r.stats.dropped for r in receivers)
                if result.errors:
                    print(f"  {name}: {result.errors} errors, first: {result.first_error}")
                results[name].append((result, count[0] + 1, delivered, dropped))
    for name in SCENARIOS:
        runs = results[name]

        def median(pick: Any, runs: list[tuple[Result, int, int, int]] = runs) -> float:
            return float(statistics.median(pick(r) for r in runs))

        print(
            f"{name:<12} | {median(lambda r: r[0].rps):>6.0f}"
            f" | {median(lambda r: r[0].p50_ms):>6.2f} | {median(lambda r: r[0].p99_ms):>6.2f}"
            f" | {median(lambda r: r[0].server_us):>14.0f} | {median(lambda r: r[1]):>6.0f}"
            f" | {median(lambda r: r[2]):>9.0f} | {median(lambda r: r[3]):>7.0f}"
            f" | {median(lambda r: r[0].other_load):>10.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
