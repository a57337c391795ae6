"""Shared pieces of the tests/test_release_*.py files: a server, keyed load, waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from client.admin import AdminClient
from client.errors import ClientError
from client.inference import InferenceClient
from models.build import FAULTY_THRESHOLD
from server.app import App
from tests.conftest import start_app

TOKEN = "release"
#: Repository control (RepositoryModelLoad) needs the admin token.
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)
#: A promotion policy that decides within a second or two of a test's traffic: 40 calls,
#: 0.3 s, a 0.2 s interval, two failing evaluations to roll back. Tests vary it with {**...}.
FAST_POLICY = {
    "shadow_ppm": 0,
    "steps": [100_000, 500_000],
    "min_requests": 40,
    "min_duration_s": 0.3,
    "interval_s": 0.2,
    "failure_threshold": 2,
    "max_error_rate_increase": 0.05,
    "max_latency_p99_ratio": 50.0,
    "min_latency_samples": 20,
}
#: A guard / promotion policy fast enough for tests (the gates as by default otherwise).
FAST = {
    "shadow_ppm": 0,
    "steps": [100_000, 500_000],
    "min_requests": 40,
    "min_duration_s": 0.3,
    "interval_s": 0.2,
    "failure_threshold": 2,
    "max_latency_p99_ratio": 50.0,
    "latency_slack_ms": 50.0,
    "min_latency_samples": 20,
}

Rows = Callable[[np.random.Generator], npt.NDArray[np.float32]]


def normal_rows(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    return rng.standard_normal((1, 4)).astype(np.float32)


def faulty_rows(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Rows half of which trip `build_classifier_faulty` (input[:, 0] past its threshold).

    With normal rows the faulty candidate fails 5 % of its calls, and a test-sized window
    (tens of calls) sees none of them about a quarter of the time: a gate that waits for
    evidence then rightly passes it. Stable never fails on any row.
    """
    row = normal_rows(rng)
    row[0, 0] += FAULTY_THRESHOLD
    return row


def serve(tmp: Path, **overrides: object) -> App:
    settings: dict[str, object] = {
        "admin_tokens": {"ops": TOKEN},
        "promotion_tick_seconds": 0.05,
        "models": {"classifier": {"stable": "1"}},
    }
    settings.update(overrides)
    return start_app(tmp, **settings)


def admin(app: App) -> AdminClient:
    return AdminClient(grpc.insecure_channel(f"127.0.0.1:{app.port}"), TOKEN)


def reload(app: App, model: str = "classifier") -> None:
    with InferenceClient(f"127.0.0.1:{app.port}", metadata=OPERATOR) as c:
        c.load(model)


class Load:
    """Keyed closed-loop traffic in a background thread until stopped; `rows` may be swapped."""

    def __init__(self, app: App, rows: Rows = normal_rows) -> None:
        self.target = f"127.0.0.1:{app.port}"
        self.rows = rows
        self.stop = threading.Event()
        self.ok = 0
        self.failed = 0
        self.by_version: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        with InferenceClient(self.target) as c:
            i = 0
            while not self.stop.is_set():
                try:
                    result = c.infer(
                        "classifier", {"input": self.rows(rng)}, routing_key=f"user-{i}"
                    )
                    self.ok += 1
                    self.by_version[result.version] = self.by_version.get(result.version, 0) + 1
                except ClientError:
                    self.failed += 1
                i += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
