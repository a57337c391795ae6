"""Real local webhook receivers for the notification benchmark and tests: an HTTP server on
port 0 in a thread that records every delivery and answers from a script, and a black hole
that accepts connections and never answers."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BlackHole", "Delivery", "WebhookReceiver", "closed_port_url"]


@dataclass(frozen=True)
class Delivery:
    """One POST as received: its path, headers and raw body."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookReceiver:
    """Records every POST; `status` (the n-th request, from 0) -> the status to answer."""

    def __init__(self, status: Callable[[int], int] = lambda n: 200) -> None:
        self.status = status
        self.deliveries: list[Delivery] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    n = receiver.requests
                    receiver.requests += 1
                    code = receiver.status(n)
                    if 200 <= code < 300:
                        receiver.deliveries.append(Delivery(self.path, dict(self.headers), body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.event for d in self.deliveries]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class BlackHole:
    """A listening socket nobody reads: connections open (the kernel's backlog) and every
    request waits for an answer that never comes, until the sender's timeout."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def closed_port_url() -> str:
    """A URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def main() -> int:
    """`python -m benchmarks.receivers`: a receiver answering 200 in a process of its own
    (so it takes no CPU time from the server's process); prints its URL, runs until stdin
    closes, then prints how many events it took."""
    with WebhookReceiver() as receiver:
        print(receiver.url, flush=True)
        sys.stdin.read()
        print(len(receiver.deliveries), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
