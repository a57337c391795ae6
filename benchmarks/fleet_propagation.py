"""How long a rollout change takes to reach every replica of a fleet.

    python -m benchmarks.fleet_propagation [--store etcd|sqlite] [--changes 50] [--replicas 3]

Starts `--replicas` canaryserve processes (`python -m server`, each its own interpreter) on one
store: a private etcd (Debian's /usr/bin/etcd on free loopback ports, data in a temporary
directory) or one shared SQLite state directory. The benchmark keeps an admin watch stream
(WatchRollouts) open on every replica, then makes `--changes` weight changes through replica
0, one at a time, and records, per change, the time from sending SetWeight until each
replica's watch stream delivered the new revision. A replica sends a watch event right after it
republished its routing snapshot, so this is the propagation of a stage change to routing,
plus one local gRPC hop. Prints p50/p99/max per replica and for "all replicas".
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchmarks.harness import describe, machine
from client.admin import AdminClient
from client.channel import open_channel
from models.build import build_repository

TOKEN = "bench"
MODEL = "classifier"
LISTENING = re.compile(r"canaryserve listening on 127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def etcd_server(root: Path, binary: str) -> Iterator[str]:
    """A single-member etcd on free loopback ports; yields HOST:PORT."""
    client, peer = free_port(), free_port()
    urls = (f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}")
    log = open(root / "etcd.log", "wb")  # noqa: SIM115 - the child writes it
    process = subprocess.Popen(
        [binary, "--name=bench", f"--data-dir={root / 'etcd'}",
         f"--listen-client-urls={urls[0]}", f"--advertise-client-urls={urls[0]}",
         f"--listen-peer-urls={urls[1]}", f"--initial-advertise-peer-urls={urls[1]}",
         f"--initial-cluster=bench={urls[1]}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", client)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"etcd did not start; see {root / 'etcd.log'}")
            time.sleep(0.1)
        yield f"127.0.0.1:{client}"
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def replica(root: Path, name: str, store: str, state_dir: Path) -> Iterator[int]:
    """`python -m server` on a free port; yields the port."""
    args = ["--models", str(root / "models"), "--port", "0", "--metrics-port", "-1",
            "--state-dir", str(state_dir)]  # fmt: skip
    if store:
        args += ["--store", store]
    env = {**os.environ, "CANARYSERVE_ADMIN_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "server", *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            match = LISTENING.search(line)
            if match:
                break
        else:
            raise SystemExit(f"replica {name} exited before listening")
        # Keep draining its log so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in process.stderr or []], daemon=True).start()
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()


def follow(port: int, events: queue.Queue[tuple[int, int, float]], index: int) -> AdminClient:
    client = AdminClient(open_channel(f"127.0.0.1:{port}"), TOKEN)

    def run() -> None:
        try:
            for event in client.watch(MODEL):
                events.put((index, event.rollout.revision, time.perf_counter()))
        except Exception:
            pass  # closed at the end

    threading.Thread(target=run, daemon=True).start()
    return client


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["etcd", "sqlite"], default="etcd")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--etcd", default="/usr/bin/etcd", help="etcd binary")
    args = parser.parse_args(argv)
    if args.store == "etcd" and shutil.which(args.etcd) is None:
        raise SystemExit(f"{args.etcd} is missing: run .ci/install-etcd.sh")
    described = describe(machine())
    with tempfile.TemporaryDirectory(prefix="canaryserve-fleet-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        build_repository(root / "models")
        store = ""
        if args.store == "etcd":
            store = f"etcd://{stack.enter_context(etcd_server(root, args.etcd))}/bench"
        ports = [
            stack.enter_context(
                replica(root, f"r{i}", store, root / (f"state{i}" if store else "state"))
            )
            for i in range(args.replicas)
        ]
        events: queue.Queue[tuple[int, int, float]] = queue.Queue()
        watchers = [follow(port, events, i) for i, port in enumerate(ports)]
        for w in watchers:
            stack.callback(w.close)
        writer = stack.enter_context(AdminClient(open_channel(f"127.0.0.1:{ports[0]}"), TOKEN))
        writer.start(MODEL, "1", canary_ppm=10_000)
        time.sleep(1.0)  # every replica has it; drain
        while not events.empty():
            events.get()
        lags: list[list[float]] = [[] for _ in ports]
        every: list[float] = []
        for change in range(args.changes):
            sent = time.perf_counter()
            revision = writer.set_weight(MODEL, 20_000 + 10_000 * (change % 50)).rollout.revision
            seen: dict[int, float] = {}
            while len(seen) < len(ports):
                index, rev, at = events.get(timeout=30)
                if rev == revision:
                    seen[index] = at - sent
            for index, lag in seen.items():
                lags[index].append(lag * 1000)
            every.append(max(seen.values()) * 1000)
    print(
        f"{args.replicas} replicas (separate processes) on {args.store}; {args.changes} weight "
        f"changes through replica 0, one at a time\nmachine: {described}\n"
    )
    print("| replica | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |")
    rows = [(f"r{i}" + (" (the writer)" if i == 0 else ""), v) for i, v in enumerate(lags)]
    for name, values in [*rows, ("all replicas", every)]:
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {max(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
