"""The request path in process: what one ModelInfer costs in Python, without gRPC's transport.

    python -m benchmarks.hotpath [--calls 20000] [--repeats 7] [--profile CASE]

One server (`App`, port 0, the bundled repository, default config: classifier stable v2) and,
beside it, the minimal server's servicer (`benchmarks.baseline`) over the same model file.
Each case calls the handler directly `--calls` times per repeat with the same batch-1 FP32
[1, 4] raw request, and prints the best repeat in µs per call (`timeit`'s rule: the least
disturbed run). Cases:

  baseline servicer       the minimal server's ModelInfer: decode raw, run, encode raw;
  dataplane / servicer    canaryserve's `DataPlane.infer`, and the servicer's ModelInfer
                          around it (error translation, metadata), with no rollout and with a
                          manual rollout of v3 at 10 % canary, keyless and keyed.

`--profile CASE` (e.g. "dataplane keyed rollout") prints cProfile's top functions for one
case instead. Figures depend on the machine's load: run on a quiet machine or read several.
See docs/benchmarks.md ("A regression to chase").
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.baseline import BaselineServicer
from benchmarks.harness import describe, machine, serving
from client.admin import AdminClient
from models.build import build_repository
from protos.inference import grpc_service_pb2 as pb
from protos.wire import ROUTING_KEY_HEADER
from server.api.inference import InferenceServicer

MODEL, STABLE, CANDIDATE, TOKEN = "classifier", "2", "3", "hotpath"


class _Context:
    """What ModelInfer reads of its gRPC context: the call's metadata."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def _request() -> pb.ModelInferRequest:
    row = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "FP32"
    tensor.shape.extend(row.shape)
    request.raw_input_contents.append(row.tobytes())
    return request


def _best(call: Callable[[], Any], calls: int, repeats: int) -> float:
    for _ in range(1000):
        call()  # warm-up: sessions, schedulers, windows
    return min(timeit.repeat(call, number=calls, repeat=repeats)) / calls * 1e6


def _cases(app: Any, baseline: BaselineServicer) -> dict[str, Callable[[], Any]]:
    servicer = InferenceServicer(
        app.registry, app.dataplane, lambda: True, app.repository, app.admin_auth
    )
    request = _request()
    keyed = {ROUTING_KEY_HEADER: "user-42"}
    plain_ctx, keyed_ctx = _Context(()), _Context(tuple(keyed.items()))
    base_ctx: Any = _Context(())
    infer, model_infer = app.dataplane.infer, servicer.ModelInfer
    return {
        "baseline servicer": lambda: baseline.ModelInfer(request, base_ctx),
        "dataplane keyless": lambda: infer(request, {}),
        "dataplane keyed": lambda: infer(request, keyed),
        "servicer keyless": lambda: model_infer(request, plain_ctx),  # type: ignore[arg-type]
        "servicer keyed": lambda: model_infer(request, keyed_ctx),  # type: ignore[arg-type]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", default="", help="profile one case, e.g. 'dataplane keyed'")
    args = parser.parse_args(argv)
    print(f"machine: {describe(machine())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="canaryserve-hotpath-") as tmp:
        root = Path(tmp)
        build_repository(root / "models")
        shutil.rmtree(root / "models" / MODEL / "4")  # the slow version: not needed here
        model_file = root / "models" / MODEL / STABLE / "model.onnx"
        baseline = BaselineServicer({MODEL: model_file}, intra_op_threads=1)
        settings = {"admin_tokens": {"ops": TOKEN}, "models": {MODEL: {"stable": STABLE}}}
        with serving(root, settings) as app:
            figures: dict[str, float] = {}
            for rollout in (False, True):
                if rollout:
                    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
                    with AdminClient(channel, TOKEN) as admin:
                        admin.start(MODEL, CANDIDATE, canary_ppm=100_000)
                suffix = " rollout" if rollout else ""
                for name, call in _cases(app, baseline).items():
                    if rollout and name.startswith("baseline"):
                        continue
                    case = name + suffix
                    if args.profile:
                        if case == args.profile:
                            _profile(call, args.calls)
                        continue
                    figures[case] = _best(call, args.calls, args.repeats)
                    print(f"{case:<28} {figures[case]:6.1f} µs/call", flush=True)
    return 0


def _profile(call: Callable[[], Any], calls: int) -> None:
    for _ in range(1000):
        call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(45)


if __name__ == "__main__":
    sys.exit(main())
