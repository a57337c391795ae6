"""The bundled repository as `canaryserve serve` runs it with no config: v2 stable, demos ready."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from client.admin import AdminClient
from client.inference import InferenceClient
from server.app import App
from server.config import load_config


def test_bundled_repository_serves_v2_and_shadows_the_demo_candidate(tmp_path: Path) -> None:
    config = load_config(
        None,
        {
            "port": 0,
            "metrics_port": 0,
            "state_dir": tmp_path,
            "admin_tokens": {"ops": "t"},
            "shadow_max_busy": 100.0,
            "shadow_timeout_seconds": 60.0,  # every run completes, however loaded the machine
            "shadow_max_cpu": 1.0,  # every shadow run is counted: no headroom shedding
            # nor shed by the candidate's queue timeout (50 ms) on a loaded machine
            "candidate_queue_timeout_seconds": 60.0,
        },
    )
    app = App(config)
    app.start()
    try:
        target = f"127.0.0.1:{app.port}"
        with InferenceClient(target) as c, AdminClient(grpc.insecure_channel(target), "t") as a:
            ready = {(m.name, m.version) for m in c.index() if m.state == "READY"}
            assert {("classifier", v) for v in "1234"} <= ready
            assert c.infer("classifier", {"input": np.zeros((1, 4), np.float32)}).version == "2"
            a.start("classifier", "3", shadow_ppm=1_000_000)
            x = np.random.default_rng(5).standard_normal((1, 4)).astype(np.float32)
            for i in range(600):
                x = np.random.default_rng(i).standard_normal((1, 4)).astype(np.float32)
                assert c.infer("classifier", {"input": x}, routing_key=f"u{i}").version == "2"
            assert app.shadow.force_flush(20)
            report = a.shadow_report("classifier")
    finally:
        app.stop(0)
    assert report.completed == 600
    assert report.disagreements < 30  # about 1 % of normal inputs
