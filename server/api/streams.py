"""Stream admission: at most `limit` streaming calls at once, and idle ones ended after a while.

The synchronous gRPC server gives every call a worker thread for as long as it runs, so a
stream holds one for its whole life, sending or not. `StreamGuard` is a server interceptor
that admits a streaming call (any method with a request or response stream) only while fewer
than `limit` are open — the rest get RESOURCE_EXHAUSTED at once — and ends a stream whose
client has sent nothing (or read none of its answers) for `idle_timeout_s`. With `limit`
below the thread count, unary calls always find a thread. Unary calls pass through untouched.

A server on grpc.aio would replace this with a counter and `asyncio.wait_for` on each read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import grpc

__all__ = ["IDLE_CODE", "LIMIT_CODE", "StreamGuard"]

log = logging.getLogger(__name__)

#: The status of a stream refused because `limit` streams are open.
LIMIT_CODE = grpc.StatusCode.RESOURCE_EXHAUSTED
#: The status of a stream ended for idling: the server's deadline for its next message passed.
IDLE_CODE = grpc.StatusCode.DEADLINE_EXCEEDED

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], "Handler | None"]
Clock: TypeAlias = Callable[[], float]


class _Stream:
    """One admitted stream: its call and, while the server waits on the client, since when."""

    __slots__ = ("context", "ended", "method", "waiting_since")

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.waiting_since: float | None = None  # waiting for a request, or for a send
        self.ended = False


class StreamGuard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Caps concurrent streaming calls at `limit` and ends streams idle for `idle_timeout_s`."""

    def __init__(self, limit: int, idle_timeout_s: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._open: set[_Stream] = set()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._open)

    def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = continuation(details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        return self._guarded(handler, details.method)

    def close(self) -> None:
        """Stop the idle watchdog (the server's own shutdown ends the streams)."""
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2.0)
            self._watchdog = None

    # -- admission --

    def _admit(self, method: str, context: grpc.ServicerContext) -> _Stream:
        stream = _Stream(method, context)
        with self._lock:
            full = len(self._open) >= self.limit
            if not full:
                self._open.add(stream)
                if self._watchdog is None and not self._stop.is_set():
                    self._watchdog = threading.Thread(
                        target=self._watch, name="stream-idle-watchdog", daemon=True
                    )
                    self._watchdog.start()
        if full:
            context.abort(
                LIMIT_CODE,
                f"too many streams: {self.limit} are open, the server's limit (config key "
                "max_streams); retry later, or send unary ModelInfer calls",
            )
        # Released when the handler finishes or, whichever comes first, when the call ends.
        context.add_callback(lambda: self._release(stream))
        return stream

    def _release(self, stream: _Stream) -> None:
        with self._lock:
            self._open.discard(stream)

    def _guarded(self, handler: Handler, method: str) -> Handler:
        guard = self
        if handler.request_streaming and handler.response_streaming:
            inner_ss = handler.stream_stream
            assert inner_ss is not None

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                stream = guard._admit(method, context)
                try:
                    yield from guard._sends(
                        stream, inner_ss(guard._reads(stream, requests), context)
                    )
                finally:
                    guard._release(stream)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.request_streaming:
            inner_su = handler.stream_unary
            assert inner_su is not None

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                stream = guard._admit(method, context)
                try:
                    return inner_su(guard._reads(stream, requests), context)
                finally:
                    guard._release(stream)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        inner_us = handler.unary_stream
        assert inner_us is not None

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
            # Server-push streams (WatchRollouts, health Watch) are quiet by design: counted
            # under the limit, never ended for idling.
            stream = guard._admit(method, context)
            try:
                yield from inner_us(request, context)
            finally:
                guard._release(stream)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )

    # -- idle tracking: the handler's thread marks when it starts and stops waiting --

    def _reads(self, stream: _Stream, requests: Iterator[Any]) -> Iterator[Any]:
        clock = self._clock
        while True:
            stream.waiting_since = clock()
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                stream.waiting_since = None
            yield request

    def _sends(self, stream: _Stream, responses: Iterator[Any]) -> Iterator[Any]:
        clock = self._clock
        for response in responses:
            stream.waiting_since = clock()  # until gRPC has sent it and asks for the next
            yield response
            stream.waiting_since = None

    def _watch(self) -> None:
        timeout = self.idle_timeout_s
        while not self._stop.wait(min(1.0, max(0.01, timeout / 10))):
            now = self._clock()
            with self._lock:
                idle = [
                    s
                    for s in self._open
                    if not s.ended
                    and s.waiting_since is not None
                    and now - s.waiting_since > timeout
                ]
                for stream in idle:
                    stream.ended = True
            for stream in idle:
                log.info("ending %s: idle for %.1f s", stream.method, timeout)
                _end(
                    stream.context,
                    IDLE_CODE,
                    f"stream idle for {timeout:g} s (config key stream_idle_timeout_seconds): "
                    "the server ends streams that send nothing to free their thread; "
                    "open a new stream to send more",
                )


def _end(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from outside its handler's thread, with `code` and `details` when possible.

    The synchronous server has no public way to do that: `context.abort` raises only in the
    thread that calls it, and `context.cancel()` ends the call with a bare CANCELLED. The call
    object behind the context can cancel with a status; where it is missing, cancel plainly.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        if call is not None:
            call.cancel(code.value[0], details)
            return
    except Exception:  # a grpc release without that call API: fall back
        log.debug("cannot end the call with a status; cancelling it", exc_info=True)
    context.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
