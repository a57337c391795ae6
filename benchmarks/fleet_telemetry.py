"""What fleet telemetry costs: the size of a replica's publication, the time of a publication
round and of a merged window read, under keyed load on three replicas.

    python -m benchmarks.fleet_telemetry [--seconds 20]

Starts a private etcd (Debian's /usr/bin/etcd on free loopback ports) and three canaryserve
replicas in this process (default config but for free ports and classifier's stable version
1), starts a guarded manual rollout of classifier 9 (a copy of 1) at 50 %, and drives each
replica with one closed-loop keyed client for `--seconds`. Then it measures, on replica 0:
20 publication rounds (Presence.publish: one etcd transaction holding this replica's
telemetry and ready versions) and 50 merged reads of the candidate's window
(FleetTelemetry.summary with an empty cache, so each includes the etcd range read); and it
reports the size of replica 0's publication. None of this runs on the request path.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.fleet_propagation import etcd_server
from benchmarks.harness import describe, machine
from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from models.build import build_repository
from server.app import App
from server.config import ConfigError, load_config

TOKEN = "bench"


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--etcd", default="/usr/bin/etcd")
    args = parser.parse_args()
    print(describe(machine()))
    root = Path(tempfile.mkdtemp(prefix="canaryserve-bench-"))
    apps: list[App] = []
    stop = threading.Event()
    calls = [0, 0, 0]
    try:
        with etcd_server(root, args.etcd) as endpoint:
            try:
                run(root, endpoint, args.seconds, apps, stop, calls)
            finally:  # the replicas go before their etcd does
                stop.set()
                for app in apps:
                    app.stop(0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(
    root: Path,
    endpoint: str,
    seconds: float,
    apps: list[App],
    stop: threading.Event,
    calls: list[int],
) -> None:
    for i in range(3):
        models = root / f"r{i}" / "models"
        build_repository(models)
        shutil.copytree(models / "classifier" / "1", models / "classifier" / "9")
        config = load_config(None, {
            "models_dir": models, "state_dir": root / f"r{i}" / "state", "port": 0,
            "metrics_port": -1, "store": f"etcd://{endpoint}/bench",
            "admin_tokens": {"bench": TOKEN}, "models": {"classifier": {"stable": "1"}},
        })  # fmt: skip
        for attempt in range(10):  # etcd may still be starting on a loaded machine
            try:
                app = App(config)
                break
            except ConfigError:
                if attempt == 9:
                    raise
                time.sleep(1.0)
        app.start()
        apps.append(app)
    with AdminClient(open_channel(f"127.0.0.1:{apps[0].port}"), TOKEN) as admin:
        for attempt in range(100):  # until every replica has version 9 ready
            try:
                admin.start("classifier", "9", canary_ppm=500_000)
                break
            except ClientError as exc:
                if attempt == 99:
                    raise
                print(exc)
                time.sleep(0.1)

    def drive(i: int) -> None:
        x = np.zeros((1, 4), dtype=np.float32)
        with InferenceClient(f"127.0.0.1:{apps[i].port}") as c:
            while not stop.is_set():
                c.infer("classifier", {"input": x}, routing_key=f"r{i}-{calls[i]}")
                calls[i] += 1

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    member = apps[0].fleet
    assert member is not None
    rounds = []
    written = member.presence.written
    for _ in range(20):
        t0 = time.perf_counter()
        member.presence.publish()
        rounds.append(time.perf_counter() - t0)
        time.sleep(0.1)  # new calls meanwhile, as between real rounds (1 s apart)
    per_round = (member.presence.written - written) / len(rounds)
    reads = []
    for _ in range(50):
        member.telemetry._cache.clear()
        t0 = time.perf_counter()
        merged = member.telemetry.summary("classifier", "9", window_s=600)
        reads.append(time.perf_counter() - t0)
    stop.set()
    for t in threads:
        t.join()
    size = sum(len(v) for v in member.telemetry.publication().values())
    others = member.telemetry.others("classifier")
    print(f"{sum(calls)} calls in {seconds:g} s over 3 replicas ({calls})")
    print(f"telemetry publication of replica 0: {size} bytes in all, {per_round:.0f} bytes"
          " written per round"
          f" ({len(others) + 1} replicas merged; candidate calls merged:"
          f" {merged.requests})")  # fmt: skip
    print(f"publication round (etcd txn of the changed pieces): {_ms(rounds)}")
    print(f"merged window read (etcd range + merge): {_ms(reads)}")


if __name__ == "__main__":
    main()
