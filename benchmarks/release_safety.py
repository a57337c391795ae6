"""Release safety: does the promotion controller stop bad candidates and promote good ones?

`python -m benchmarks.release_safety [--runs N] [--json PATH] [--quick]` starts a real server
(`App`, port 0) per scenario over a fresh copy of the bundled repository plus a real candidate
ONNX file, drives keyed N(0, 1) traffic from a load generator in a spawned child process (its
own GIL and channels), starts an automatic rollout with an explicit policy and watches the
promotion controller decide. Scenarios: a faulty candidate (~5% errors), a slow one (~1.5x p99
end to end), an identical one (N seeded runs), no traffic at all, and a ~1% shadow
disagreement. It ends with a summary table and exits 1 when any scenario misses.
docs/release-safety.md describes the scenarios and the figures measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from client.admin import AdminClient
from client.errors import ClientError
from client.inference import InferenceClient
from models.build import (
    MODEL_FILE,
    build_classifier_faulty,
    build_classifier_slow,
    build_repository,
)
from server.app import App
from server.config import load_config

__all__ = ["BASE_POLICY", "Outcome", "Tally", "main", "run_all"]

MODEL, STABLE, TOKEN = "classifier", "2", "release-safety"
RATE, CONCURRENCY, USERS = 800.0, 4, 1_000_000  # requests/s over 4 client threads; user keys
WARMUP_S = 1.0  # stable-only traffic before each rollout: the baseline a live server has
BASE_POLICY: dict[str, Any] = {
    "shadow_ppm": 0,
    "steps": [10_000, 50_000, 250_000, 500_000, 1_000_000],
    "min_requests": 200,
    "min_duration_s": 1.0,
    "interval_s": 0.25,
    "failure_threshold": 2,
    "confidence": 0.95,
    "max_error_rate_increase": 0.01,
    "max_latency_p99_ratio": 1.3,
    "min_latency_samples": 100,
    "max_disagreement_rate": 0.005,
}
Build = Callable[[Path], object]


@dataclass
class Tally:
    """What the load generator saw: answers and end-to-end latency (ms) per version, errors."""

    ok: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def p99(self, version: str) -> float | None:
        samples = self.latency_ms.get(version, [])
        return float(np.percentile(samples, 99)) if samples else None

    @property
    def rps(self) -> float:
        return (sum(self.ok.values()) + sum(self.errors.values())) / max(self.seconds, 1e-9)


def _client_thread(
    target: str, seed: int, index: int, pin: tuple[tuple[str, float], ...], stop: threading.Event
) -> Tally:
    rng, tally = np.random.default_rng([seed, index]), Tally()
    period, next_at = CONCURRENCY / RATE, time.perf_counter()
    with InferenceClient(target) as client:
        while not stop.is_set():
            x = rng.standard_normal((1, 4), dtype=np.float32)
            key, u, version = f"user-{seed}-{rng.integers(USERS)}", rng.random(), ""
            for pinned, share in pin:  # calibration only: pin a share of calls to a version
                if u < share:
                    version = pinned
                    break
                u -= share
            t0 = time.perf_counter()
            try:
                got = client.infer(MODEL, {"input": x}, version=version, routing_key=key).version
                tally.ok[got] = tally.ok.get(got, 0) + 1
                tally.latency_ms.setdefault(got, []).append((time.perf_counter() - t0) * 1e3)
            except ClientError as exc:
                tally.errors[exc.code] = tally.errors.get(exc.code, 0) + 1
            next_at = max(next_at + period, time.perf_counter() - period)  # steady, no bursts
            stop.wait(max(0.0, next_at - time.perf_counter()))
    return tally


def _load_child(conn: Connection) -> None:
    """The spawned child: ("start", target, seed, pin) begins load, ("stop",) returns a Tally."""
    while (message := conn.recv())[0] == "start":
        _, target, seed, pin = message
        stop, tallies = threading.Event(), [Tally() for _ in range(CONCURRENCY)]

        def run(i: int) -> None:
            tallies[i] = _client_thread(target, seed, i, pin, stop)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(CONCURRENCY)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        conn.send("started")
        conn.recv()
        stop.set()
        for t in threads:
            t.join()
        total = Tally(seconds=time.perf_counter() - began)
        for part in tallies:
            for v, n in part.ok.items():
                total.ok[v] = total.ok.get(v, 0) + n
                total.latency_ms.setdefault(v, []).extend(part.latency_ms[v])
            for code, n in part.errors.items():
                total.errors[code] = total.errors.get(code, 0) + n
        conn.send(total)


class LoadGen:
    """Parent side of the load generator process."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_load_child, args=(child,), daemon=True)
        self._proc.start()

    def start(self, target: str, seed: int, pin: tuple[tuple[str, float], ...] = ()) -> None:
        self._conn.send(("start", target, seed, pin))
        self._conn.recv()

    def stop(self) -> Tally:
        self._conn.send(("stop",))
        tally: Tally = self._conn.recv()
        return tally

    def close(self) -> None:
        self._conn.send(("quit",))
        self._proc.join(10)


def _serve(tmp: Path, candidates: Mapping[str, Build]) -> App:
    """A server over a fresh repository (classifier 1-4 as bundled) plus `candidates`."""
    root = tmp / "models"
    build_repository(root)
    for version, build in candidates.items():
        (root / MODEL / version).mkdir(parents=True, exist_ok=True)
        build(root / MODEL / version / MODEL_FILE)
    settings = {"models_dir": root, "state_dir": tmp / "state", "port": 0, "metrics_port": -1}
    settings |= {"admin_tokens": {"bench": TOKEN}, "promotion_tick_seconds": 0.05}
    settings |= {"intra_op_threads": 1, "workers": 8, "grace_seconds": 1.0}
    app = App(load_config(None, {**settings, "models": {MODEL: {"stable": STABLE}}}))
    app.start()
    return app


def _identical(path: Path) -> None:
    shutil.copyfile(path.parents[1] / STABLE / MODEL_FILE, path)


def _served(app: App) -> dict[str, float]:
    """Requests each version served so far (the server's own windows; shadow runs excluded)."""
    return {v: t.requests for (m, v), t in app.telemetry.windows.totals().items() if m == MODEL}


@dataclass
class Rollout:
    """How one automatic rollout ended, from the server's and the client's point of view."""

    action: str
    reason: str
    stable: str
    seconds: float | None
    requests: int
    candidate_requests: int
    max_canary_ppm: int
    salt: str
    checks: dict[str, dict[str, Any]]
    tally: Tally
    operations: list[str]


def _rollout(app: App, load: LoadGen | None, seed: int, candidate: str, policy: Mapping[str, Any],
             *, timeout: float = 90.0) -> Rollout:  # fmt: skip
    target = f"127.0.0.1:{app.port}"
    if load is not None:
        load.start(target, seed)
        time.sleep(WARMUP_S)
    with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
        before = _served(app)
        admin.start(MODEL, candidate, automatic=True, policy_json=json.dumps(policy))
        salt, top, deadline = app.rollouts.get(MODEL).salt, 0, time.monotonic() + timeout
        while (state := app.rollouts.get(MODEL)).candidate is not None:
            top = max(top, state.canary_ppm)
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        after = _served(app)
        tally = load.stop() if load is not None else Tally()
        explained, audit = admin.explain(MODEL), admin.audit(MODEL)
    stamp = {e.operation: e.at.seconds + e.at.nanos / 1e9 for e in reversed(audit)}
    ended = next((op for op in ("auto_rollback", "auto_promote") if op in stamp), None)
    seconds = stamp[ended] - stamp["start"] if ended and "start" in stamp else None
    return Rollout(
        action=explained.action if explained.evaluated else "not evaluated",
        reason=explained.reason,
        stable=state.stable,
        seconds=seconds,
        requests=round(sum(after.values()) - sum(before.values())),
        candidate_requests=round(after.get(candidate, 0.0) - before.get(candidate, 0.0)),
        max_canary_ppm=top,
        salt=salt,
        checks={
            c.name: {
                "status": c.status,
                "observed": c.observed,
                "threshold": c.threshold,
                "detail": c.detail,
            }
            for c in explained.checks
        },  # fmt: skip
        tally=tally,
        operations=[e.operation for e in audit],
    )


@dataclass
class Outcome:
    """One scenario's row of the summary table."""

    scenario: str
    expected: str
    observed: str
    requests: int
    candidate_requests: int
    seconds: float | None
    passed: bool
    policy: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


def _report(out: Outcome, r: Rollout | None = None) -> Outcome:
    print(f"\n== {out.scenario}\n   policy: {json.dumps(out.policy)}")
    secs = "-" if out.seconds is None else f"{out.seconds:.2f} s"
    print(f"   served from rollout start to decision: {out.requests} requests, "
          f"{out.candidate_requests} by the candidate; decision after {secs}")  # fmt: skip
    if r is not None:
        print(f"   salt {r.salt}; client saw {r.tally.rps:.0f} req/s, errors {r.tally.errors}")
        print(f"   explain: {r.action}: {r.reason}")
    for key, value in out.details.items():
        print(f"   {key}: {value}")
    print(f"   -> {'PASS' if out.passed else 'FAIL'}: {out.observed}")
    return out


def _faulty(tmp: Path, load: LoadGen) -> Outcome:
    policy = dict(BASE_POLICY)
    app = _serve(tmp, {"5": lambda p: build_classifier_faulty(p, base=2)})
    try:
        r = _rollout(app, load, 101, "5", policy)
    finally:
        app.stop(0)
    gate = r.checks.get("error_rate", {})
    ok = r.action == "rollback" and gate.get("status") == "fail" and r.candidate_requests < 1000
    observed = f"{r.action} by error_rate after {r.candidate_requests} candidate requests"
    out = Outcome("1 faulty (5% errors)", "rollback, <1000 candidate requests", observed,
                  r.requests, r.candidate_requests, r.seconds, ok, policy)  # fmt: skip
    return _report(out, r)


def _calibrate(tmp: Path, load: LoadGen, widths: list[int], seconds: float) -> dict[int, float]:
    """End-to-end p99 of each slow width over stable's, 10% of calls pinned to the width."""
    versions = {str(10 + i): w for i, w in enumerate(widths)}
    builds: dict[str, Build] = {}
    for v, w in versions.items():
        builds[v] = lambda p, w=w: build_classifier_slow(p, w, base=2)  # type: ignore[misc]
    app = _serve(tmp, builds)
    ratios: dict[int, float] = {}
    try:
        for v, w in versions.items():
            load.start(f"127.0.0.1:{app.port}", 7, ((v, 0.1),))
            time.sleep(seconds)
            tally = load.stop()
            slow, base = tally.p99(v), tally.p99(STABLE)
            ratios[w] = slow / base if slow and base else float("nan")
            print(f"   width {w:5d}: p99 {slow or 0:.2f} ms vs stable {base or 0:.2f} ms"
                  f" = {ratios[w]:.2f}x end to end")  # fmt: skip
    finally:
        app.stop(0)
    return ratios


def _slow(tmp: Path, load: LoadGen, quick: bool) -> Outcome:
    policy = dict(BASE_POLICY)
    print("\n== calibrating the slow candidate (target: 1.5x stable's end-to-end p99)")
    widths = [1536, 2048, 2560] if quick else [1536, 2048, 2304, 2560, 3072]
    ratios = _calibrate(tmp / "calibration", load, widths, 2.0 if quick else 4.0)
    width = min(ratios, key=lambda w: abs(ratios[w] - 1.5))
    app = _serve(tmp / "run", {"6": lambda p: build_classifier_slow(p, width, base=2)})
    try:
        r = _rollout(app, load, 202, "6", policy)
    finally:
        app.stop(0)
    gate, errs = r.checks.get("latency_p99", {}), r.checks.get("error_rate", {})
    ok = r.action == "rollback" and gate.get("status") == "fail" and errs.get("status") != "fail"
    slow, base = r.tally.p99("6"), r.tally.p99(STABLE)
    e2e = slow / base if slow and base else float("nan")
    details = {"width": width, "calibration p99 ratio": f"{ratios[width]:.2f}",
               "end-to-end p99 ratio during the rollout": f"{e2e:.2f} ({slow} / {base} ms)",
               "server-side p99 ratio judged by the gate": gate.get("observed")}  # fmt: skip
    observed = f"{r.action} by latency_p99 (server p99 ratio {gate.get('observed') or 0:.2f})"
    out = Outcome("2 slow (1.5x p99)", "rollback by latency_p99", observed, r.requests,
                  r.candidate_requests, r.seconds, ok, policy, details)  # fmt: skip
    return _report(out, r)


def _same(tmp: Path, load: LoadGen, runs: int) -> Outcome:
    policy = {**BASE_POLICY, "steps": [100_000, 250_000, 500_000, 1_000_000]}
    print(f"\n== 3 identical candidate, {runs} seeded runs\n   policy: {json.dumps(policy)}")
    promoted, times, rows = 0, [], []
    for run in range(runs):
        app = _serve(tmp / f"run{run}", {"7": _identical})
        try:
            r = _rollout(app, load, 1000 + run, "7", policy)
        finally:
            app.stop(0)
        good = r.action == "promote" and r.stable == "7" and "auto_rollback" not in r.operations
        promoted += good
        times.append(r.seconds or float("nan"))
        rows.append({"seed": 1000 + run, "salt": r.salt, "action": r.action, "seconds": r.seconds,
                     "requests": r.requests, "candidate_requests": r.candidate_requests})  # fmt: skip
        print(f"   run {run + 1:2d} seed {1000 + run} salt {r.salt}: {r.action} after "
              f"{r.seconds or 0:.2f} s, {r.requests} requests ({r.candidate_requests} candidate)"
              + ("" if good else f"  <-- {r.reason}"))  # fmt: skip
    arr = np.array(times)
    details = {"promoted": f"{promoted} of {runs}", "runs": rows, "seconds min/median/max":
               f"{np.nanmin(arr):.2f} / {np.nanmedian(arr):.2f} / {np.nanmax(arr):.2f}"}  # fmt: skip
    requests = int(np.median([row["requests"] for row in rows]))
    cand = int(np.median([row["candidate_requests"] for row in rows]))
    out = Outcome("3 identical", f"promoted {runs} of {runs}", f"promoted {promoted} of {runs}",
                  requests, cand, float(np.nanmedian(arr)), promoted == runs, policy, details)  # fmt: skip
    return _report(out)


def _silent(tmp: Path) -> Outcome:
    policy = dict(BASE_POLICY)
    app = _serve(tmp, {"7": _identical})
    try:
        start = time.monotonic()
        r = _rollout(app, None, 0, "7", policy, timeout=5.0)
        state, waited = app.rollouts.get(MODEL), time.monotonic() - start
    finally:
        app.stop(0)
    unchanged = state.candidate == "7" and state.canary_ppm == policy["steps"][0]
    ok = unchanged and r.action == "hold" and r.requests == 0 and state.revision == 2
    observed = f"{r.action} after {waited:.1f} s, revision {state.revision}, " \
               f"canary {state.canary_ppm} ppm"  # fmt: skip
    out = Outcome("4 no traffic", "hold, rollout unchanged, explained", observed, r.requests,
                  r.candidate_requests, None, ok, policy)  # fmt: skip
    return _report(out, r)


def _shadow(tmp: Path, load: LoadGen) -> Outcome:
    policy = {**BASE_POLICY, "shadow_ppm": 1_000_000, "max_disagreement_rate": 0.005}
    app = _serve(tmp, {})  # classifier 3 as bundled: v2 with W[3,2] nudged, ~1% other argmax
    try:
        r = _rollout(app, load, 303, "3", policy)
        with AdminClient(grpc.insecure_channel(f"127.0.0.1:{app.port}"), TOKEN) as admin:
            report = admin.shadow_report(MODEL)
    finally:
        app.stop(0)
    gate = r.checks.get("shadow_disagreement", {})
    answered = r.tally.ok.get("3", 0)
    ok = r.action in ("rollback", "hold") and gate.get("status") == "fail"
    ok = ok and r.candidate_requests == 0 and answered == 0 and r.max_canary_ppm == 0
    details = {"disagreement": f"{gate.get('observed')} vs max {gate.get('threshold')}: "
               f"{gate.get('detail')}", "shadow report": f"sampled {report.sampled}, completed "
               f"{report.completed}, disagreements {report.disagreements}, dropped "
               f"{report.dropped}, errors {report.errors}, timeouts {report.timeouts}",
               "candidate": f"served {r.candidate_requests} (server windows), answered "
               f"{answered} (client), max canary weight {r.max_canary_ppm} ppm"}  # fmt: skip
    observed = f"{r.action} in the shadow step, {r.candidate_requests} user requests on v3"
    out = Outcome("5 shadow disagreement", "blocked in shadow, 0 candidate requests", observed,
                  r.requests, r.candidate_requests, r.seconds, ok, policy, details)  # fmt: skip
    return _report(out, r)


def run_all(runs: int, quick: bool) -> list[Outcome]:
    """Every scenario in order, each on its own server; one load generator process for all."""
    load = LoadGen()
    outcomes: list[Outcome] = []
    try:
        with tempfile.TemporaryDirectory(prefix="release-safety-") as tmp:
            root = Path(tmp)
            outcomes.append(_faulty(root / "faulty", load))
            outcomes.append(_slow(root / "slow", load, quick))
            outcomes.append(_same(root / "identical", load, runs))
            outcomes.append(_silent(root / "silent"))
            outcomes.append(_shadow(root / "shadow", load))
    finally:
        load.close()
    return outcomes


def _table(outcomes: list[Outcome]) -> str:
    head = ("scenario", "expected", "observed", "requests (cand.)", "seconds", "result")
    rows = [head] + [
        (o.scenario, o.expected, o.observed, f"{o.requests} ({o.candidate_requests})",
         "-" if o.seconds is None else f"{o.seconds:.2f}", "PASS" if o.passed else "FAIL")
        for o in outcomes
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="identical-candidate runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 runs)")
    args = parser.parse_args(argv)
    runs = min(args.runs, 2) if args.quick else args.runs
    began = time.monotonic()
    print(f"release safety: {RATE:.0f} req/s keyed N(0,1) traffic over {CONCURRENCY} client "
          f"threads in a child process; stable v{STABLE}; intra_op_threads 1")  # fmt: skip
    outcomes = run_all(runs, args.quick)
    print(f"\n{_table(outcomes)}\n\ntotal {time.monotonic() - began:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
