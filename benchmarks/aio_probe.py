"""Would an asyncio serving core beat the thread pool? The minimal baseline servicer, served by
grpc's sync server (a thread pool, as canaryserve is today) and by grpc.aio (the session run on
the event loop), side by side on the serving benchmark's harness.

    python -m benchmarks.aio_probe [--duration 3] [--repeats 5] [--concurrency 1,4,16]

Same models, pinning, load generator and ABBA order as `benchmarks.serving`; prints req/s and
p50 per side and the aio/sync ratio (best runs, and the median of paired runs). A probe for a
decision (docs/scheduling.md), not a gate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import grpc

from benchmarks.baseline import BaselineServer, BaselineServicer
from benchmarks.harness import LoadChild, abba, pin_process, split_cores
from benchmarks.load import Result, Spec
from benchmarks.serving import MODELS, build_repository
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc


class _AioServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, sync: BaselineServicer) -> None:
        self._sync = sync

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelInferResponse:
        return self._sync.ModelInfer(request, context)  # type: ignore[arg-type]


class AioServer:
    """BaselineServicer on grpc.aio, its event loop in one thread of this process."""

    def __init__(self, models: dict[str, Path], intra_op_threads: int) -> None:
        self._servicer = _AioServicer(BaselineServicer(models, intra_op_threads))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self._servicer, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(0)

    def start(self) -> int:
        self._thread.start()
        self._ready.wait(10)
        return self.port

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aio_probe", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--models", default="classifier,mlp")
    args = parser.parse_args(argv)
    cores = split_cores(True)
    if cores is not None:
        pin_process("self", cores[1])
    with tempfile.TemporaryDirectory(prefix="canaryserve-aio-") as tmp:
        paths = build_repository(Path(tmp) / "models")
        sync = BaselineServer(paths, workers=16, max_message_bytes=64 << 20, intra_op_threads=1)
        aio = AioServer(paths, intra_op_threads=1)
        targets = {"sync": f"127.0.0.1:{sync.start()}", "aio": f"127.0.0.1:{aio.start()}"}
        print(
            "model       conc |  sync req/s  p50 ms |   aio req/s  p50 ms | aio/sync best  paired"
        )
        try:
            with LoadChild(cores) as child:
                for index, (model, conc) in enumerate(
                    (m, int(c)) for m in args.models.split(",") for c in args.concurrency.split(",")
                ):
                    runs: dict[str, list[Result]] = {"sync": [], "aio": []}
                    for side in abba(["sync", "aio"], args.repeats, index):
                        spec = Spec(kind="grpc", model=model, shape=MODELS[model],
                                    concurrency=conc, duration=args.duration,
                                    warmup=args.warmup, target=targets[side])  # fmt: skip
                        runs[side].append(child.measure(spec))
                    best = {s: max(r, key=lambda x: x.rps) for s, r in runs.items()}
                    paired = statistics.median(
                        a.rps / s.rps for a, s in zip(runs["aio"], runs["sync"], strict=True)
                    )
                    s, a = best["sync"], best["aio"]
                    print(
                        f"{model:<11} {conc:>4} | {s.rps:>11.0f} {s.p50_ms:>7.3f}"
                        f" | {a.rps:>11.0f} {a.p50_ms:>7.3f}"
                        f" | {a.rps / s.rps:>13.3f} {paired:>7.3f}",
                        flush=True,
                    )
        finally:
            sync.stop(0)
            aio.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
