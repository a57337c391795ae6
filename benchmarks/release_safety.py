"""Release safety: does the promotion controller stop bad candidates and promote good ones?

`python -m benchmarks.release_safety [--runs N] [--json PATH] [--quick] [--rate R]` starts a
real server (`App`, port 0) per scenario over a fresh bundled repository plus a real candidate
ONNX file, drives keyed N(0, 1) traffic from the load generator child process
(`benchmarks.load`: its own GIL and channels), starts an automatic rollout with an explicit
policy and watches the promotion controller decide: a faulty candidate (~5% errors), a slow
one (~1.5x end-to-end p99), an identical one (N seeded runs), no traffic at all, and ~1% shadow
disagreement. Ends with a summary table; exits 1 when any scenario misses. See
docs/release-safety.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.harness import LoadChild, describe, machine, serving
from benchmarks.load import Result, Spec
from client.admin import AdminClient
from models import build as mb
from protos.canaryserve.admin.v1.admin_pb2 import GateCheck
from server.app import App

__all__ = ["BASE_POLICY", "Outcome", "Rollout", "main", "run_all"]

MODEL, STABLE, TOKEN = "classifier", "2", "release-safety"
RATE, CONCURRENCY, INPUTS = 800.0, 4, 4096  # default req/s, client threads, distinct rows
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
Build = Callable[[Path], object]  # writes one candidate model file
Pin = tuple[str, float] | None  # calibration: (version, share of the calls pinned to it)
SETTINGS: dict[str, Any] = {
    "admin_tokens": {"bench": TOKEN}, "promotion_tick_seconds": 0.05, "workers": 8,
    "grace_seconds": 1.0, "models": {MODEL: {"stable": STABLE}},
}  # fmt: skip


def _spec(target: str, seed: int, rate: float, pin: Pin = None) -> Spec:
    """Until stopped: `rate` calls/s of seeded N(0, 1) rows [1, 4] on CONCURRENCY threads, each
    with a random user key and a request id, answers tallied by version."""
    return Spec(kind="grpc", model=MODEL, shape=[1, 4], concurrency=CONCURRENCY, duration=0.0,
                warmup=0.0, target=target, rate=rate, inputs=INPUTS, seed=seed, keys="random",
                request_ids=True, by_version=True, pin_version=pin[0] if pin else "",
                pin_share=pin[1] if pin else 0.0)  # fmt: skip


def _p99(load: Result, version: str) -> float:
    """End-to-end p99 (ms, from the send) of the calls `version` answered; NaN without any."""
    return load.version_p99_ms.get(version, float("nan"))


@dataclass
class Traffic:
    """The load generator child (one for the whole benchmark) at the benchmark's rate."""

    child: LoadChild
    rate: float = RATE

    def start(self, target: str, seed: int, pin: Pin = None) -> None:
        self.child.start(_spec(target, seed, self.rate, pin))


def _serve(tmp: Path, candidates: Mapping[str, Build]) -> AbstractContextManager[App]:
    """A server over a fresh bundled repository (classifier 1-4) plus `candidates`."""
    root = tmp / "models"
    mb.build_repository(root)
    for version, build in candidates.items():
        (root / MODEL / version).mkdir(parents=True, exist_ok=True)
        build(root / MODEL / version / mb.MODEL_FILE)
    return serving(tmp, SETTINGS)


def _slow_model(width: int) -> Build:
    return lambda path: mb.build_classifier_slow(path, width, base=2)


def _identical(path: Path) -> None:
    shutil.copyfile(path.parents[1] / STABLE / mb.MODEL_FILE, path)


def _served(app: App) -> dict[str, float]:
    """Requests per version by the server's windows (candidate: exact; stable: scaled sample)."""
    return {v: t.requests for (m, v), t in app.telemetry.windows.totals().items() if m == MODEL}


@dataclass
class Rollout:
    """How one automatic rollout ended, by the server, its explain answer and the client."""

    action: str
    reason: str
    stable: str
    seconds: float | None  # audit: start to auto_rollback / auto_promote
    requests: int  # calls of the load generator, start to decision
    candidate_requests: int  # the candidate's window, start to decision
    served: int  # every version's windows, start to decision
    max_canary_ppm: int
    salt: str
    revisions: tuple[int, int]  # right after the start, at the end
    checks: dict[str, GateCheck]
    operations: list[str]
    load: Result  # what the load generator saw, warm-up included


def _rollout(tmp: Path, load: Traffic | None, seed: int, candidate: str, build: Build | None,
             policy: Mapping[str, Any], timeout: float = 90.0) -> Rollout:  # fmt: skip
    """A fresh server; warm-up traffic; an automatic rollout of `candidate` until it ends."""
    with (
        _serve(tmp, {candidate: build} if build else {}) as app,
        AdminClient(grpc.insecure_channel(target := f"127.0.0.1:{app.port}"), TOKEN) as admin,
    ):
        if load is not None:
            load.start(target, seed)
            time.sleep(WARMUP_S)
        before, calls = _served(app), load.child.count() if load else 0
        admin.start(MODEL, candidate, automatic=True, policy_json=json.dumps(policy))
        first, top, deadline = app.rollouts.get(MODEL), 0, time.monotonic() + timeout
        while (state := app.rollouts.get(MODEL)).candidate and time.monotonic() < deadline:
            top = max(top, state.canary_ppm)
            time.sleep(0.02)
        after, calls = _served(app), (load.child.count() - calls) if load else 0
        seen = load.child.stop() if load else Result()
        explained, audit = admin.explain(MODEL), admin.audit(MODEL, limit=1000)
    at = {e.operation: e.at.seconds + e.at.nanos / 1e9 for e in audit}
    end = next((at[op] for op in ("auto_rollback", "auto_promote") if op in at), None)
    return Rollout(
        action=explained.action if explained.evaluated else "not evaluated",
        reason=explained.reason,
        stable=state.stable,
        seconds=end - at["start"] if end is not None else None,
        requests=calls,
        candidate_requests=round(after.get(candidate, 0.0) - before.get(candidate, 0.0)),
        served=round(sum(after.values()) - sum(before.values())),
        max_canary_ppm=top,
        salt=first.salt,
        revisions=(first.revision, state.revision),
        checks={c.name: c for c in explained.checks},
        operations=[e.operation for e in audit],
        load=seen,
    )


@dataclass
class Outcome:
    """One scenario's row of the summary table, with what was printed about it."""

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
    """Print one scenario's result as it finishes."""
    secs = "-" if out.seconds is None else f"{out.seconds:.2f} s"
    print(f"\n== {out.scenario}\n   policy: {json.dumps(out.policy)}")
    print(f"   rollout start to decision: {out.requests} requests, {out.candidate_requests} "
          f"served by the candidate, {secs}")  # fmt: skip
    if r is not None:
        print(f"   salt {r.salt}; {r.load.rps:.0f} req/s; client errors {r.load.status}")
        print(f"   explain: {r.action}: {r.reason}")
    for key, value in out.details.items():
        if not isinstance(value, list):  # the per-run list is printed as it runs
            print(f"   {key}: {value}")
    print(f"   -> {'PASS' if out.passed else 'FAIL'}: {out.observed}")
    return out


def _row(name: str, expected: str, observed: str, ok: bool, policy: dict[str, Any],
         r: Rollout, **details: Any) -> Outcome:  # fmt: skip
    out = Outcome(name, expected, observed, r.requests, r.candidate_requests, r.seconds, ok,
                  policy, details)  # fmt: skip
    return _report(out, r)


def _faulty(tmp: Path, load: Traffic) -> Outcome:
    policy = dict(BASE_POLICY)
    r = _rollout(tmp, load, 101, "5", lambda p: mb.build_classifier_faulty(p, base=2), policy)
    gate = r.checks.get("error_rate")
    ok = r.action == "rollback" and gate is not None and gate.status == "fail"
    ok = ok and r.candidate_requests < 1000
    observed = f"{r.action} by error_rate after {r.candidate_requests} candidate requests"
    return _row("1 faulty (5% errors)", "rollback, <1000 candidate requests", observed, ok,
                policy, r)  # fmt: skip


def _calibrate(tmp: Path, load: Traffic, widths: list[int], seconds: float) -> dict[int, float]:
    """End-to-end p99 of each slow width over stable's, with 10% of the calls pinned to it."""
    versions = {str(10 + i): w for i, w in enumerate(widths)}
    ratios: dict[int, float] = {}
    with _serve(tmp, {v: _slow_model(w) for v, w in versions.items()}) as app:
        for version, width in versions.items():
            load.start(f"127.0.0.1:{app.port}", 7, (version, 0.1))
            time.sleep(seconds)
            t = load.child.stop()
            ratios[width] = _p99(t, version) / _p99(t, STABLE)
            print(f"   width {width:5d}: p99 {_p99(t, version):.2f} ms vs stable "
                  f"{_p99(t, STABLE):.2f} ms = {ratios[width]:.2f}x end to end")  # fmt: skip
    return ratios


def _slow(tmp: Path, load: Traffic, quick: bool) -> Outcome:
    policy = dict(BASE_POLICY)
    print("\n== calibrating the slow candidate's width (target 1.5x stable's end-to-end p99)")
    widths = [2048, 2560] if quick else [1536, 2048, 2304, 2560, 3072]
    ratios = _calibrate(tmp / "calibration", load, widths, 2.0 if quick else 5.0)
    width = min(ratios, key=lambda w: abs(ratios[w] - 1.5))
    r = _rollout(tmp / "run", load, 202, "6", _slow_model(width), policy)
    gate, errors = r.checks.get("latency_p99"), r.checks.get("error_rate")
    ok = r.action == "rollback" and gate is not None and gate.status == "fail"
    ok = ok and (errors is None or errors.status != "fail")
    server = gate.observed if gate is not None else float("nan")
    e2e = f"{_p99(r.load, '6'):.2f} / {_p99(r.load, STABLE):.2f} ms"
    return _row("2 slow (~1.5x p99)", "rollback by latency_p99",
                f"{r.action} by latency_p99 (server-side p99 ratio {server:.2f})", ok, policy, r,
                width=width, calibration_e2e_p99_ratio=round(ratios[width], 2),
                rollout_e2e_p99=f"{_p99(r.load, '6') / _p99(r.load, STABLE):.2f}x ({e2e})",
                gate_server_p99_ratio=round(server, 2))  # fmt: skip


def _same(tmp: Path, load: Traffic, runs: int) -> Outcome:
    policy = {**BASE_POLICY, "steps": [100_000, 250_000, 500_000, 1_000_000]}
    print(f"\n== 3 identical candidate (v2's file as v7), {runs} seeded runs")
    rows: list[dict[str, Any]] = []
    for run in range(runs):
        r = _rollout(tmp / f"run{run}", load, 1000 + run, "7", _identical, policy)
        good = r.action == "promote" and r.stable == "7" and "auto_rollback" not in r.operations
        rows.append({"seed": 1000 + run, "salt": r.salt, "promoted": good, "seconds": r.seconds,
                     "requests": r.requests, "candidate_requests": r.candidate_requests,
                     "reason": r.reason})  # fmt: skip
        print(f"   run {run + 1:2d} seed {1000 + run} salt {r.salt}: {r.action} after "
              f"{r.seconds or 0:5.2f} s, {r.requests} requests ({r.candidate_requests} candidate)"
              + ("" if good else f"\n      {r.reason}"), flush=True)  # fmt: skip
    kept = [row for row in rows if row["promoted"]] or rows  # medians over promoted runs
    promoted, times = sum(row["promoted"] for row in rows), [r["seconds"] or 0 for r in kept]
    spread = f"{min(times):.2f} / {np.median(times):.2f} / {max(times):.2f}"
    out = Outcome("3 identical", f"promoted {runs} of {runs}", f"promoted {promoted} of {runs}",
                  int(np.median([row["requests"] for row in kept])),
                  int(np.median([row["candidate_requests"] for row in kept])),
                  float(np.median(times)), promoted == runs, policy,
                  {"time to promotion min/median/max (s)": spread, "runs": rows})  # fmt: skip
    return _report(out)


def _silent(tmp: Path) -> Outcome:
    policy, began = dict(BASE_POLICY), time.monotonic()
    r = _rollout(tmp, None, 0, "7", _identical, policy, timeout=5.0)
    ok = r.action == "hold" and r.served == 0 and r.revisions[0] == r.revisions[1]
    ok = ok and r.max_canary_ppm == policy["steps"][0] and "auto_hold" in r.operations
    observed = (f"{r.action} after {time.monotonic() - began:.1f} s, revision {r.revisions[0]}"
                f" -> {r.revisions[1]}, canary {r.max_canary_ppm} ppm")  # fmt: skip
    return _row("4 no traffic", "hold, rollout unchanged, explained", observed, ok, policy, r)


def _shadow(tmp: Path, load: Traffic) -> Outcome:
    policy = {**BASE_POLICY, "shadow_ppm": 1_000_000, "max_disagreement_rate": 0.005}
    r = _rollout(tmp, load, 303, "3", None, policy)  # bundled v3: v2 with W[3,2] + 0.085
    gate = r.checks.get("shadow_disagreement")
    answered = r.load.versions.get("3", 0)
    ok = r.action in ("rollback", "hold") and gate is not None and gate.status == "fail"
    ok = ok and r.candidate_requests == 0 and answered == 0 and r.max_canary_ppm == 0
    observed = f"{r.action} in the shadow step; candidate served {r.candidate_requests} users"
    return _row("5 shadow disagreement", "blocked in shadow, 0 candidate requests", observed,
                ok, policy, r, disagreement=gate.detail if gate else "no gate",
                candidate=f"{r.candidate_requests} requests in its window, {answered} answers "
                f"seen by the client, canary weight at most {r.max_canary_ppm} ppm")  # fmt: skip


def run_all(runs: int, quick: bool, rate: float = RATE) -> list[Outcome]:
    """Every scenario in order, each on its own server; one load generator process for all."""
    with LoadChild() as child, tempfile.TemporaryDirectory(prefix="release-safety-") as tmp:
        load, root = Traffic(child, rate), Path(tmp)
        return [
            _faulty(root / "faulty", load),
            _slow(root / "slow", load, quick),
            _same(root / "identical", load, runs),
            _silent(root / "silent"),
            _shadow(root / "shadow", load),
        ]


def _table(outcomes: list[Outcome]) -> str:
    head = ("scenario", "expected", "observed", "requests (cand.)", "seconds", "result")
    rows = [head] + [
        (o.scenario, o.expected, o.observed, f"{o.requests} ({o.candidate_requests})",
         "-" if o.seconds is None else f"{o.seconds:.2f}", "PASS" if o.passed else "FAIL")
        for o in outcomes
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="identical-candidate runs (20)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--quick", action="store_true", help="short smoke run (2 runs)")
    parser.add_argument("--rate", type=float, default=RATE, help="requests/s (800)")
    args = parser.parse_args(argv)
    runs, began = (min(args.runs, 2) if args.quick else args.runs), time.monotonic()
    print(f"release safety: {args.rate:.0f} req/s (open loop) of keyed N(0,1) rows from "
          f"{CONCURRENCY} client threads in a child process; stable v{STABLE}; intra_op_threads 1"
          f"\nmachine: {describe(machine())}")  # fmt: skip
    outcomes = run_all(runs, args.quick, args.rate)
    print(f"\n{_table(outcomes)}\n\ntotal {time.monotonic() - began:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
