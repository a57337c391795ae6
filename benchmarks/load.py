"""The benchmarks' one load generator, run as a child process so it does not share the servers' GIL.

`python -m benchmarks.load` reads one JSON command per line on stdin and answers each with one
JSON line on stdout (`benchmarks.harness.LoadChild` is the parent's side):

- `{"op": "run", "spec": {...}}`: measure one `Spec` to its end and answer its `Result`;
- `{"op": "start", "spec": {...}}`: start it, answer `{"started": true}` once every thread sends;
- `{"op": "count"}`: answer `{"calls": n}`, the calls the started run has made so far;
- `{"op": "stop"}`: end the started run now and answer its `Result`.

A spec is `concurrency` threads for `warmup + duration` seconds (duration 0: until "stop"); only
calls due inside the `duration` window are counted. Closed loop (rate 0): each thread calls as
fast as it can. Open loop: call n is due at `start + n / rate` and whichever thread is free
sends it; latency counts from the due time (no coordinated omission), service time from the
actual send, lag is how late the send left.

What a call is comes from `benchmarks.calls`:

- kind "grpc": every thread has its own channel (its own TCP connection) and stub, and cycles
  through `inputs` seeded N(0, 1) ModelInferRequests with raw_input_contents, built once. Per
  call it can add a routing key (`keys`), metadata, a request id and a pinned version, and tally
  answers by the version that served them (`by_version`); errors are tallied by status code.
- kind "raw": every thread calls `session.run` on one shared onnxruntime session in this
  process, with canaryserve's session options.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import numpy as np

from benchmarks.calls import Make, make_calls
from client.errors import from_rpc_error

__all__ = ["Result", "Run", "Spec", "main"]


@dataclass(frozen=True)
class Spec:
    """One measurement point, or one open-ended run (duration 0)."""

    kind: str  # "grpc" or "raw"
    model: str
    shape: list[int]  # of the single FP32 input
    concurrency: int
    duration: float  # measured seconds; 0: until "stop"
    warmup: float
    input_name: str = "input"
    target: str = ""  # host:port, for kind "grpc"
    path: str = ""  # model file, for kind "raw"
    intra_op_threads: int = 1  # for kind "raw"
    max_message_bytes: int = 64 * 1024 * 1024
    rate: float = 0.0  # open loop: calls/s over all threads; 0: closed loop
    inputs: int = 1  # distinct seeded N(0, 1) inputs, cycled
    seed: int = 0  # of the inputs, the random keys and the version pinning
    keys: str = ""  # x-routing-key: "" none, "sequential" user-<n>, "random" user-<seed>-<k>
    metadata: list[list[str]] = field(default_factory=list)  # more (key, value) pairs per call
    pin_version: str = ""  # ask for this version ...
    pin_share: float = 0.0  # ... on this share of the calls, at random
    request_ids: bool = False  # request id "<seed>-<thread>-<n>"
    by_version: bool = False  # tally answers and service p99 by the version that served them
    by_route: bool = False  # the same by "version/route_reason" (fallbacks apart from the rest)


@dataclass
class Result:
    """What one run measured; latencies in milliseconds."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0  # open loop: from the due time
    mean_ms: float = 0.0
    first_error: str = ""
    total_calls: int = 0  # warm-up included: what the servers' CPU time is divided by
    client_cpu_s: float = 0.0  # the load generator's CPU time over the whole run
    server_cpu_s: float = 0.0  # the serving process's, filled in by the parent (gRPC only)
    other_load: float = 0.0  # cores busy with other processes meanwhile, filled in by the parent
    service_p99_ms: float = 0.0  # from the actual send (equals p99 in closed loop)
    lag_p99_ms: float = 0.0  # how late the generator sent (open loop; large: client-bound)
    versions: dict[str, int] = field(default_factory=dict)  # answers by version (by_version)
    version_p99_ms: dict[str, float] = field(default_factory=dict)  # service p99 by version
    status: dict[str, int] = field(default_factory=dict)  # errors by status code

    @property
    def client_us(self) -> float:
        """Load generator CPU per call, microseconds."""
        return self.client_cpu_s / self.total_calls * 1e6 if self.total_calls else 0.0

    @property
    def server_us(self) -> float:
        """Server process CPU per call, microseconds."""
        return self.server_cpu_s / self.total_calls * 1e6 if self.total_calls else 0.0


class _Tally:
    """One sender thread's figures (ns) and counts; only that thread writes them."""

    def __init__(self) -> None:
        self.calls = self.last = 0
        self.latency: list[int] = []
        self.service: list[int] = []
        self.lag: list[int] = []
        self.versions: dict[str, list[int]] = {}
        self.status: dict[str, int] = {}
        self.first_error = ""

    def error(self, exc: Exception) -> None:
        if isinstance(exc, grpc.RpcError):
            error = from_rpc_error(exc)
            code, text = error.code, str(error)
        else:
            code, text = type(exc).__name__, f"{type(exc).__name__}: {exc}"
        self.status[code] = self.status.get(code, 0) + 1
        self.first_error = self.first_error or text


def _ms(parts: Iterable[list[int]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return (
        np.concatenate([np.asarray(p, dtype=np.int64) for p in parts] or [np.zeros(0, np.int64)])
        / 1e6
    )


def _p(samples: np.ndarray[Any, np.dtype[np.float64]], q: float) -> float:
    return float(np.percentile(samples, q)) if samples.size else 0.0


class Run:
    """One spec's sender threads, from the start of their traffic to the run's `Result`."""

    def __init__(self, spec: Spec) -> None:
        self.spec, self._cpu = spec, time.process_time()
        self._channels: list[grpc.Channel] = []
        make = make_calls(spec, self._channels)
        self._window: dict[str, int] = {}
        self._stop = threading.Event()
        self._tallies = [_Tally() for _ in range(spec.concurrency)]
        ready = threading.Barrier(spec.concurrency + 1, action=self._open)
        seq = itertools.count()  # shared: distinct keys, and the open loop's next slot
        self._threads = [
            threading.Thread(target=self._send, args=(make, i, ready, seq, tally))
            for i, tally in enumerate(self._tallies)
        ]
        for t in self._threads:
            t.start()
        ready.wait()  # every thread has its channel: the traffic starts now

    def _open(self) -> None:
        start = time.perf_counter_ns()
        begin = start + int(self.spec.warmup * 1e9)
        end = begin + int(self.spec.duration * 1e9) if self.spec.duration > 0 else 1 << 62
        self._window.update(start=start, begin=begin, end=end)

    def _send(
        self, make: Make, index: int, ready: threading.Barrier, seq: Iterable[int], t: _Tally
    ) -> None:
        try:
            call = make(index)
        except Exception as exc:  # e.g. cannot connect: report it, and don't strand the others
            t.error(exc)
            ready.wait()
            return
        ready.wait()
        clock, stop = time.perf_counter_ns, self._stop
        by_version = self.spec.by_version or self.spec.by_route
        start, begin, end = self._window["start"], self._window["begin"], self._window["end"]
        step = 1e9 / self.spec.rate if self.spec.rate else 0.0
        for i in seq:
            now = clock()
            due = start + int(i * step) if step else now
            if due >= end or stop.is_set():
                return
            if due > now:
                if stop.wait((due - now) / 1e9):
                    return
                now = clock()
            t.calls += 1
            try:
                version = call(i)
            except Exception as exc:
                t.error(exc)
                continue
            if due >= begin:
                t.last = done = clock()
                t.latency.append(done - due)
                if step:
                    t.service.append(done - now)
                    t.lag.append(now - due)
                if by_version:
                    t.versions.setdefault(version, []).append(done - now)

    def calls(self) -> int:
        """Calls made so far, warm-up included."""
        return sum(t.calls for t in self._tallies)

    def finish(self, now: bool) -> Result:
        """Wait for the threads (`now`: stop them first) and summarise the run."""
        if now:
            self._stop.set()
        for t in self._threads:
            t.join()
        ended = time.perf_counter_ns()
        for channel in self._channels:
            channel.close()
        return self._summary(ended, now)

    def _summary(self, ended: int, stopped: bool) -> Result:
        spec, ts, begin = self.spec, self._tallies, self._window["begin"]
        lat = _ms(t.latency for t in ts)
        first = next((t.first_error for t in ts if t.first_error), "")
        result = Result(int(lat.size), seconds=spec.duration, first_error=first)
        result.total_calls = self.calls()
        for t in ts:
            for code, n in t.status.items():
                result.status[code] = result.status.get(code, 0) + n
        result.errors = sum(result.status.values())
        if stopped or spec.duration <= 0:
            result.seconds = max(ended - begin, 0) / 1e9
        elif spec.rate:  # open loop: until the last answer, if the server fell behind
            result.seconds = max(spec.duration, (max(t.last for t in ts) - begin) / 1e9)
        if lat.size and result.seconds > 0:
            result.rps = lat.size / result.seconds
            result.p50_ms, result.p99_ms = _p(lat, 50), _p(lat, 99)
            result.mean_ms = float(lat.mean())
            service = _ms(t.service for t in ts)
            result.service_p99_ms = _p(service, 99) if service.size else result.p99_ms
            result.lag_p99_ms = _p(_ms(t.lag for t in ts), 99)
        for version in sorted({v for t in ts for v in t.versions}):
            samples = _ms(t.versions.get(version, []) for t in ts)
            result.versions[version] = int(samples.size)
            result.version_p99_ms[version] = _p(samples, 99)
        result.client_cpu_s = time.process_time() - self._cpu
        return result


def _failed(exc: Exception) -> dict[str, Any]:
    return asdict(Result(errors=1, first_error=f"{type(exc).__name__}: {exc}"))


def main() -> int:
    """Serve commands from stdin until it closes."""
    current: Run | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        op, answer = command.get("op"), dict[str, Any]()
        try:
            if op in ("run", "start"):
                if current is not None:
                    current.finish(now=True)
                current = Run(Spec(**command["spec"]))
                answer = {"started": True}
            elif op == "count":
                answer = {"calls": current.calls() if current else 0}
            elif op != "stop":
                raise ValueError(f"unknown op {op!r}")
            if op in ("run", "stop"):
                run, current = current, None
                answer = asdict(run.finish(now=op == "stop")) if run else asdict(Result())
        except Exception as exc:  # report, keep serving the parent
            current, answer = None, _failed(exc)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
