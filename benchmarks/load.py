"""Closed-loop load generator, run as a child process so it does not share the servers' GIL.

`python -m benchmarks.load` reads one JSON `Spec` per line on stdin and answers each with one
JSON `Result` line on stdout. A spec is one measurement point: `concurrency` threads, each
calling as fast as it can for `warmup + duration` seconds; only calls that start inside the
`duration` window are counted.

- kind "grpc": every thread has its own channel (its own TCP connection) and stub, and sends
  the same ModelInferRequest with raw_input_contents, built once.
- kind "raw": every thread calls `session.run` on one shared onnxruntime session in this
  process, with canaryserve's session options.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.baseline import make_session
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

__all__ = ["Result", "Spec", "main", "run"]

Call = Callable[[], object]


@dataclass(frozen=True)
class Spec:
    """One measurement point."""

    kind: str  # "grpc" or "raw"
    model: str
    shape: list[int]  # of the single FP32 input
    concurrency: int
    duration: float
    warmup: float
    input_name: str = "input"
    target: str = ""  # host:port, for kind "grpc"
    path: str = ""  # model file, for kind "raw"
    intra_op_threads: int = 1  # for kind "raw"
    max_message_bytes: int = 64 * 1024 * 1024


@dataclass
class Result:
    """What one point measured; latencies in milliseconds."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    first_error: str = ""
    total_calls: int = 0  # warm-up included: what the servers' CPU time is divided by
    client_cpu_s: float = 0.0  # this process's CPU time over the whole point
    server_cpu_s: float = 0.0  # the serving process's, filled in by the parent (gRPC only)
    other_load: float = 0.0  # cores busy with other processes meanwhile, filled in by the parent

    @property
    def client_us(self) -> float:
        """Load generator CPU per call, microseconds."""
        return self.client_cpu_s / self.total_calls * 1e6 if self.total_calls else 0.0

    @property
    def server_us(self) -> float:
        """Server process CPU per call, microseconds."""
        return self.server_cpu_s / self.total_calls * 1e6 if self.total_calls else 0.0


def _input(spec: Spec) -> np.ndarray[Any, np.dtype[np.float32]]:
    rng = np.random.default_rng(0)
    return rng.standard_normal(spec.shape, dtype=np.float32)


def _grpc_factory(spec: Spec) -> tuple[Callable[[], Call], list[grpc.Channel]]:
    request = pb.ModelInferRequest(
        model_name=spec.model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name=spec.input_name, datatype="FP32")],
        raw_input_contents=[_input(spec).tobytes()],
    )
    request.inputs[0].shape.extend(spec.shape)
    channels: list[grpc.Channel] = []
    lock = threading.Lock()
    options = [
        ("grpc.max_receive_message_length", spec.max_message_bytes),
        ("grpc.max_send_message_length", spec.max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),  # one connection per channel, not shared
    ]

    def make() -> Call:
        channel = grpc.insecure_channel(spec.target, options=options)
        grpc.channel_ready_future(channel).result(timeout=10)
        with lock:
            channels.append(channel)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        method = stub.ModelInfer

        def call() -> object:
            return method(request, timeout=30.0)

        return call

    return make, channels


_SESSIONS: dict[tuple[str, int], Any] = {}


def _raw_factory(spec: Spec) -> Callable[[], Call]:
    key = (spec.path, spec.intra_op_threads)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = make_session(Path(spec.path), spec.intra_op_threads)
    feeds = {spec.input_name: _input(spec)}
    outputs = [a.name for a in session.get_outputs()]
    run_ = session.run

    def make() -> Call:
        def call() -> object:
            return run_(outputs, feeds)

        return call

    return make


def _worker(
    make: Callable[[], Call],
    barrier: threading.Barrier,
    window: dict[str, int],
    latencies: list[list[int]],
    errors: list[str],
    calls: list[int],
) -> None:
    mine: list[int] = []
    latencies.append(mine)  # list.append is atomic under the GIL
    try:
        call = make()
    except Exception as exc:  # e.g. cannot connect: report it, and don't strand the others
        errors.append(f"{type(exc).__name__}: {exc}")
        calls.append(0)
        barrier.wait()
        return
    barrier.wait()
    done = 0
    begin, end = window["begin"], window["end"]
    clock = time.perf_counter_ns
    while True:
        t0 = clock()
        if t0 >= end:
            calls.append(done)
            return
        done += 1
        try:
            call()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if t0 >= begin:
            mine.append(clock() - t0)


def run(spec: Spec) -> Result:
    """Measure one point and summarise it."""
    cpu = time.process_time()
    channels: list[grpc.Channel] = []
    if spec.kind == "grpc":
        make, channels = _grpc_factory(spec)
    elif spec.kind == "raw":
        make = _raw_factory(spec)
    else:
        raise ValueError(f"unknown kind {spec.kind!r}")
    window: dict[str, int] = {}

    def open_window() -> None:  # runs once, when every thread is connected and ready
        now = time.perf_counter_ns()
        window["begin"] = now + int(spec.warmup * 1e9)
        window["end"] = window["begin"] + int(spec.duration * 1e9)

    barrier = threading.Barrier(spec.concurrency, action=open_window)
    latencies: list[list[int]] = []
    errors: list[str] = []
    calls: list[int] = []
    threads = [
        threading.Thread(target=_worker, args=(make, barrier, window, latencies, errors, calls))
        for _ in range(spec.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for channel in channels:
        channel.close()
    samples = np.concatenate([np.asarray(x, dtype=np.int64) for x in latencies]) / 1e6
    result = Result(
        requests=int(samples.size),
        errors=len(errors),
        seconds=spec.duration,
        first_error=errors[0] if errors else "",
        total_calls=sum(calls),
        client_cpu_s=time.process_time() - cpu,
    )
    if samples.size:
        result.rps = samples.size / spec.duration
        result.p50_ms = float(np.percentile(samples, 50))
        result.p99_ms = float(np.percentile(samples, 99))
        result.mean_ms = float(samples.mean())
    return result


def main() -> int:
    """Serve specs from stdin until it closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = Spec(**json.loads(line))
        try:
            result = run(spec)
        except Exception as exc:  # report, keep serving the parent
            result = Result(errors=1, first_error=f"{type(exc).__name__}: {exc}")
        sys.stdout.write(json.dumps(asdict(result)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
