"""What survives a restart: the real `canaryserve serve` process, killed and started again."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from models.build import build_classifier_slow
from protos.canaryserve.admin.v1 import admin_pb2 as pb
from tests.conftest import make_repository, start_app
from tests.support.waiting import wait_for

TOKEN = "restart-token"
X = np.zeros((1, 4), dtype=np.float32)
KEYS = [f"user-{i}" for i in range(200)]
LISTENING = re.compile(r"canaryserve listening on 127\.0\.0\.1:(\d+)")
METRICS = re.compile(r"metrics on (http://127\.0\.0\.1:\d+/metrics)")
EU = pb.CohortRule(metadata_key="x-region", value="eu", target=pb.COHORT_TARGET_CANDIDATE)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def busy(self, model: str) -> float:
        """Runs of `model` in progress now, from the server's /metrics."""
        match = METRICS.search(self.log.read_text())
        assert match, "the server logs its metrics address"
        with urllib.request.urlopen(match.group(1), timeout=5) as answer:
            text = answer.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "canaryserve_instances_busy"
            for sample in family.samples
            if sample.labels.get("model") == model
        )

    def admin(self) -> AdminClient:
        return AdminClient(open_channel(self.target), TOKEN)

    def inference(self, **kwargs: object) -> InferenceClient:
        return InferenceClient(self.target, **kwargs)  # type: ignore[arg-type]


class Launcher:
    """Starts `canaryserve serve` processes on one state dir; stops any left running."""

    def __init__(
        self, tmp: Path, models: Path, grace_seconds: float = 10.0, extra_config: str = ""
    ) -> None:
        self.tmp = tmp
        self.models = models
        self.state = tmp / "state"
        self.config = tmp / "canaryserve.toml"
        self.config.write_text(
            f"intra_op_threads = 1\ngrace_seconds = {grace_seconds}\nmetrics_port = 0\n"
            + extra_config
        )
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> Served:
        log = self.tmp / f"server-{len(self.started)}.log"
        command = [
            sys.executable, "-m", "client.cli", "serve", "--port", "0",
            "--state-dir", str(self.state), "--models", str(self.models),
            "--config", str(self.config),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.tmp,
                env={**env, "CANARYSERVE_ADMIN_TOKEN": TOKEN},
            )
        self.started.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = LISTENING.search(log.read_text())
            if match:
                return Served(process, int(match.group(1)), log)
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            time.sleep(0.05)
        pytest.fail(f"server did not report its port in time:\n{log.read_text()}")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, make_repository(tmp_path))
    yield launcher
    launcher.stop_all()


def versions_by_key(client: InferenceClient, keys: list[str] = KEYS) -> dict[str, str]:
    return {k: client.infer("classifier", {"input": X}, routing_key=k).version for k in keys}


def versions(served: Served) -> dict[str, str]:
    with served.inference() as client:
        return versions_by_key(client)


def audit_rows(admin: AdminClient) -> list[tuple[object, ...]]:
    fields = ("id", "actor", "model", "operation", "reason", "before_json", "after_json")
    return [
        (e.at.ToNanoseconds(), *(getattr(e, f) for f in fields)) for e in admin.audit(limit=1000)
    ]


def test_rollout_survives_kill_9_with_the_same_keys_on_the_same_versions(
    launcher: Launcher,
) -> None:
    first = launcher.start()
    with first.admin() as admin:
        # No guard rails: v1 really disagrees with v2 in shadow, and a guard_hold row would
        # make the audit log this test compares across the restart depend on timing.
        admin.start(
            "classifier",
            "1",
            canary_ppm=300_000,
            cohort_rules=[EU],
            reason="30% + eu",
            no_guard=True,
        )
        admin.set_shadow("classifier", 10_000, reason="sample a few")
        before = admin.get("classifier")
        audit_before = audit_rows(admin)
    seen = versions(first)
    assert 0.15 < sum(v == "1" for v in seen.values()) / len(KEYS) < 0.45

    os.kill(first.process.pid, signal.SIGKILL)
    assert first.process.wait(10) == -signal.SIGKILL

    second = launcher.start()
    assert second.port != 0
    assert versions(second) == seen
    with second.admin() as admin:
        after = admin.get("classifier")
        assert after.revision == before.revision
        assert after.rollout_id == before.rollout_id
        assert (after.phase, after.candidate_version, after.stable_version) == (
            pb.PHASE_CANARY,
            "1",
            "2",
        )
        assert (after.canary_weight_ppm, after.shadow_rate_ppm) == (300_000, 10_000)
        assert list(after.cohort_rules) == [EU]
        assert audit_rows(admin) == audit_before
        assert [e.operation for e in admin.audit("classifier")][-2:] == ["start", "set_shadow"]
        assert admin.audit("classifier")[-2].actor == "env"
        # The restarted server keeps writing the same log, after the old rows.
        admin.set_weight("classifier", 400_000, reason="after restart")
        assert audit_rows(admin)[:-1] == audit_before
    with second.inference(metadata=[("x-region", "eu")]) as eu:
        answer = eu.infer("classifier", {"input": X}, routing_key="user-0")
        assert (answer.version, answer.reason) == ("1", "cohort")


def test_sigterm_drains_calls_in_flight_and_exits_0(tmp_path: Path) -> None:
    models = make_repository(tmp_path)
    # ~1 s per call below: slow enough to still be running when SIGTERM arrives.
    build_classifier_slow(models / "slow" / "1" / "model.onnx", width=2048)
    # Two slots, so both calls run at once rather than one waiting in the queue (whose 5 s
    # timeout a loaded machine can reach while the first call runs).
    launcher = Launcher(
        tmp_path, models, grace_seconds=10.0, extra_config="[models.slow]\ninstances = 2\n"
    )
    try:
        served = launcher.start()
        batch = np.random.default_rng(0).standard_normal((8000, 4)).astype(np.float32)
        results: list[str] = []
        finished: list[float] = []
        failures: list[BaseException] = []

        def call() -> None:
            try:
                with served.inference(timeout=20) as client:
                    results.append(client.infer("slow", {"input": batch}).version)
                    finished.append(time.monotonic())
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: served.busy("slow") == 2, message="both calls running")
        sent = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(15)
        took = time.monotonic() - sent
        for t in threads:
            t.join(10)
    finally:
        launcher.stop_all()
    log = served.log.read_text()
    assert code == 0, log
    assert took < 10.0
    assert failures == [] and results == ["1", "1"]
    assert min(finished) > sent  # both calls were still running when SIGTERM arrived
    assert "received SIGTERM; draining (grace 10.0s)" in log
    # Logs are JSON lines when stderr is not a terminal (--log-format auto).
    assert '"logger": "canaryserve", "message": "stopped"' in log
    assert "Traceback" not in log


def test_new_version_on_disk_does_not_change_stable_before_or_after_restart(
    tmp_path: Path,
) -> None:
    models = make_repository(tmp_path / "repo")
    state = tmp_path / "state"
    tokens = {"ops": "t0k"}
    first = start_app(tmp_path / "a", models_dir=models, state_dir=state, admin_tokens=tokens)
    try:
        target = f"127.0.0.1:{first.port}"
        operator = (("authorization", "Bearer t0k"),)  # loading needs the admin token
        with (
            AdminClient(open_channel(target), "t0k") as admin,
            InferenceClient(target, metadata=operator) as client,
        ):
            admin.start("classifier", "1", canary_ppm=300_000)
            keyed = versions_by_key(client)
            audit_before = len(admin.audit(limit=1000))

            shutil.copytree(models / "classifier" / "1", models / "classifier" / "3")
            client.load("classifier")

            ready = {(m.name, m.version) for m in client.index() if m.state == "READY"}
            assert ("classifier", "3") in ready
            assert client.infer("classifier", {"input": X}).version == "2"
            assert versions_by_key(client) == keyed
            pinned = client.infer("classifier", {"input": X}, version="3")
            assert (pinned.version, pinned.stage, pinned.reason) == ("3", "loaded", "pinned")
            r = admin.get("classifier")
            assert (r.stable_version, r.candidate_version) == ("2", "1")
            loads = [e.operation for e in admin.audit(limit=1000)[audit_before:]]
            assert loads == ["load"]  # audited, yet the rollout above is unchanged
            admin.transition("rollback", "classifier")
    finally:
        first.stop(0)

    second = start_app(tmp_path / "b", models_dir=models, state_dir=state, admin_tokens=tokens)
    try:
        target = f"127.0.0.1:{second.port}"
        with AdminClient(open_channel(target), "t0k") as admin, InferenceClient(target) as client:
            assert admin.get("classifier").stable_version == "2"
            answer = client.infer("classifier", {"input": X})
            assert (answer.version, answer.reason) == ("2", "no_rollout")
            assert set(versions_by_key(client, KEYS[:50]).values()) == {"2"}
            # Version 3 can now be rolled out like any other.
            started = admin.start("classifier", "3", canary_ppm=10_000).rollout
            assert started.candidate_version == "3"
    finally:
        second.stop(0)


def test_open_watch_stream_does_not_hold_shutdown_for_the_grace_period(tmp_path: Path) -> None:
    # An operator running `canaryserve status --watch` must not make every shutdown wait the
    # whole grace period and then see its stream cut with UNAVAILABLE.
    app = start_app(tmp_path, admin_tokens={"ops": "t0k"}, grace_seconds=2.0)
    outcome: list[object] = []
    with AdminClient(open_channel(f"127.0.0.1:{app.port}"), "t0k") as watcher:

        def consume() -> None:
            try:
                outcome.extend(watcher.watch())
                outcome.append("ended cleanly")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=consume)
        thread.start()
        with AdminClient(open_channel(f"127.0.0.1:{app.port}"), "t0k") as admin:
            admin.start("classifier", "1")
            for shadow in range(1, 100):  # until the stream is live
                if outcome:
                    break
                admin.set_shadow("classifier", shadow)
                thread.join(0.05)
        began = time.monotonic()
        app.stop()
        took = time.monotonic() - began
        thread.join(5)
    assert outcome and outcome[-1] == "ended cleanly", outcome[-1:]
    assert took < 1.0
