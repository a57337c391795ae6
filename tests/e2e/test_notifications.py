"""Notifications end to end: a real server posting to real local HTTP receivers.

Events arrive in order and signed; a receiver that is down is retried and never slows
inference; a pre-promotion hook answering 500 holds an automatic rollout (and `rollout
explain` says why) until it answers 200; `notify test` reports each receiver.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.receivers import BlackHole, WebhookReceiver, closed_port_url
from client.inference import InferenceClient
from client.webhooks import SIGNATURE_HEADER, verify
from models.build import build_classifier_faulty
from server.app import App
from server.notify.transport import post
from tests.e2e.test_cli import cli
from tests.support.release import FAST_POLICY, TOKEN, Load, admin, faulty_rows, reload, serve
from tests.support.waiting import wait_for

SECRET = "receiver-secret"
POLICY = FAST_POLICY
ROW = {"input": np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)}


def _webhooks(*urls: str, **extra: object) -> dict[str, object]:
    return {"webhooks": [{"url": u, "secret": SECRET} for u in urls], **extra}


def _add_candidate(app: App) -> None:
    repo = app.config.models_dir / "classifier"
    shutil.copytree(repo / "1", repo / "3")
    reload(app)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def test_rollout_events_arrive_in_order_and_signed(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    app = serve(tmp_path, notifications=_webhooks(receiver.url + "/events"))
    try:
        _add_candidate(app)
        with admin(app) as a:
            a.start("classifier", "3", canary_ppm=50_000, reason="try v3")
            a.set_weight("classifier", 250_000)
            a.transition("pause", "classifier")
            a.transition("rollback", "classifier", reason="enough")
        wait_for(lambda: len(receiver.deliveries) >= 4, message="four events delivered")
    finally:
        app.stop(0)
    events = [verify(SECRET, d.headers[SIGNATURE_HEADER], d.body) for d in receiver.deliveries]
    assert [e["type"] for e in events] == [
        "rollout.started",
        "rollout.stepped",
        "rollout.paused",
        "rollout.rolled_back",
    ]
    assert all(d.path == "/events" for d in receiver.deliveries)
    first, last = events[0], events[-1]
    assert (first["model"], first["actor"], first["reason"]) == ("classifier", "ops", "try v3")
    assert first["details"]["canary_weight_percent"] == 5.0
    assert last["summary"] == "version 3 rolled back; stable is 1"
    assert last["text"].startswith(":warning: *classifier*: version 3 rolled back")


def test_a_receiver_that_fails_is_retried_until_it_takes_the_event(tmp_path: Path) -> None:
    # Non-default backoff (50 ms first wait) so the test does not wait seconds.
    with WebhookReceiver(status=lambda n: 503 if n < 2 else 200) as flaky:
        app = serve(
            tmp_path,
            notifications=_webhooks(
                flaky.url, backoff_initial_seconds=0.05, backoff_max_seconds=0.2
            ),
        )
        try:
            _add_candidate(app)
            with admin(app) as a:
                a.start("classifier", "3", canary_ppm=10_000)
            (receiver,) = app.notifier.receivers
            # The sender counts the delivery once the receiver's answer is back.
            wait_for(lambda: receiver.stats.delivered, message="the event delivered after retries")
            assert flaky.requests == 3
            assert (receiver.stats.retries, receiver.stats.delivered) == (2, 1)
            metrics = app.metrics()
        finally:
            app.stop(0)
    assert f'canaryserve_notifications_retries_total{{receiver="{flaky.url}"}} 2.0' in metrics


def _median_ms(client: InferenceClient, calls: int) -> float:
    times = []
    for i in range(calls):
        started = time.perf_counter()
        client.infer("classifier", ROW, routing_key=f"k{i}")
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def test_a_black_holed_receiver_never_slows_inference(tmp_path: Path) -> None:
    """Inference latency beside a receiver that accepts connections and never answers
    (every delivery waits out its timeout, then is retried) against a server with none."""
    with BlackHole() as hole:
        quiet = serve(tmp_path / "quiet")
        stuck = serve(
            tmp_path / "stuck",
            notifications={"webhooks": [{"url": hole.url, "timeout_seconds": 1.0}]},
        )
        try:
            for app in (quiet, stuck):  # the same rollout on both: only the receiver differs
                _add_candidate(app)
                with admin(app) as a:
                    a.start("classifier", "3", canary_ppm=10_000)
                    for weight in range(20_000, 220_000, 20_000):
                        a.set_weight("classifier", weight)  # eleven events behind the hole
            (receiver,) = stuck.notifier.receivers
            with (
                InferenceClient(f"127.0.0.1:{quiet.port}") as q,
                InferenceClient(f"127.0.0.1:{stuck.port}") as s,
            ):
                _median_ms(q, 50), _median_ms(s, 50)  # warm both
                absent, holed = [], []
                for _ in range(5):  # interleaved, so machine load falls on both alike
                    absent.append(_median_ms(q, 60))
                    holed.append(_median_ms(s, 60))
            assert receiver.pending() >= 5 and receiver.stats.delivered == 0, "still stuck"
        finally:
            quiet.stop(0)
            stuck.stop(0)
    a_ms, h_ms = statistics.median(absent), statistics.median(holed)
    print(f"median inference latency: no receiver {a_ms:.2f} ms, black-holed {h_ms:.2f} ms")
    assert h_ms < 2 * a_ms + 2.0, (absent, holed)


def test_a_pre_promotion_hook_answering_500_holds_until_it_answers_200(tmp_path: Path) -> None:
    answer = {"status": 500}
    with WebhookReceiver(status=lambda n: answer["status"]) as gate, WebhookReceiver() as events:
        app = serve(
            tmp_path,
            notifications={
                "webhooks": [{"url": events.url}],
                "pre_promotion_hook": {"url": gate.url + "/confirm", "secret": SECRET},
            },
        )
        try:
            _add_candidate(app)
            with admin(app) as a, Load(app):
                a.start("classifier", "3", automatic=True, policy_json=json.dumps(POLICY))
                why = f"pre-promotion hook {gate.url} answered 500"
                wait_for(
                    lambda: why in a.explain("classifier").reason,
                    timeout=60,
                    message="the hook's refusal explained",
                )
                explained = a.explain("classifier")
                assert explained.action == "hold"
                check = next(c for c in explained.checks if c.name == "pre_promotion_hook")
                assert (check.status, check.detail) == ("fail", why)
                assert a.get("classifier").canary_weight_ppm == 100_000  # held at step 0
                shown = cli(
                    f"127.0.0.1:{app.port}", "rollout", "explain", "classifier", "--token", TOKEN
                )
                assert why in shown.stdout, shown.stdout + shown.stderr
                answer["status"] = 200
                wait_for(
                    lambda: a.get("classifier").stable_version == "3",
                    timeout=60,
                    message="the rollout promoted once the hook answered 200",
                )
            wait_for(lambda: "rollout.promoted" in [e["type"] for e in events.events()])
        finally:
            app.stop(0)
    assert gate.requests >= 3  # asked again at every evaluation
    asked = gate.deliveries[-1]
    confirm = verify(SECRET, asked.headers[SIGNATURE_HEADER], asked.body)
    assert confirm["type"] == "rollout.confirm_promotion" and confirm["model"] == "classifier"
    held = [e for e in events.events() if e["type"] == "rollout.held"]
    assert any(why in e["reason"] for e in held)


def test_a_faulty_candidate_logs_its_failures_and_notifies_its_rollback(
    tmp_path: Path, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    app = serve(tmp_path, notifications=_webhooks(receiver.url))
    try:
        build_classifier_faulty(app.config.models_dir / "classifier" / "3" / "model.onnx")
        reload(app)
        strict = {**POLICY, "max_error_rate_increase": 0.01}
        with caplog.at_level(logging.WARNING), admin(app) as a:
            a.start("classifier", "3", automatic=True, policy_json=json.dumps(strict))
            with Load(app, rows=faulty_rows):
                wait_for(lambda: not a.get("classifier").candidate_version, timeout=60)
        # In order, after the events before it: a full test run on 2 cores can take a while.
        wait_for(
            lambda: "rollout.rolled_back" in [e["type"] for e in receiver.events()],
            timeout=30,
            message="the rollback event at the receiver",
        )
    finally:
        app.stop(0)
    rolled_back = next(e for e in receiver.events() if e["type"] == "rollout.rolled_back")
    assert rolled_back["severity"] == "critical" and rolled_back["actor"] == "promotion"
    assert rolled_back["details"]["trace_ids"], "example trace ids of failing calls"
    failures = [r for r in caplog.records if r.name == "canaryserve.calls"]
    first = next(r for r in failures if "suppressed" not in r.__dict__)
    assert (first.__dict__["model"], first.__dict__["version"]) == ("classifier", "3")
    assert first.__dict__["code"] == "INTERNAL" and first.exc_info is not None
    assert len(first.__dict__["trace_id"]) == 32  # candidate calls are all traced
    seconds = {int(r.created) for r in failures}
    assert len([r for r in failures if "suppressed" not in r.__dict__]) <= 5 * (len(seconds) + 1)
    events = [r for r in caplog.records if r.name == "canaryserve.events"]
    assert any(r.__dict__["event"] == "rollout.rolled_back" for r in events)


def test_notify_test_reports_each_receiver(tmp_path: Path, receiver: WebhookReceiver) -> None:
    down = closed_port_url()
    app = serve(
        tmp_path,
        notifications={
            "webhooks": [
                {"url": receiver.url, "name": "ops-channel", "secret": SECRET},
                {"url": down, "timeout_seconds": 1.0},
            ]
        },
    )
    target = f"127.0.0.1:{app.port}"
    try:
        with admin(app) as a:
            good, bad = a.send_test_notification("checking the wiring")
        assert (good.receiver, good.delivered, good.http_status) == ("ops-channel", True, 200)
        assert (bad.delivered, bad.http_status) == (False, 0) and "refused" in bad.error.lower()
        (delivery,) = receiver.deliveries
        event = verify(SECRET, delivery.headers[SIGNATURE_HEADER], delivery.body)
        assert (event["type"], event["reason"]) == ("notification.test", "checking the wiring")
        shown = cli(target, "notify", "test", "--token", TOKEN)
        assert shown.returncode == 1, shown.stderr  # one receiver is down
        assert "ops-channel" in shown.stdout and "NOT delivered, unreachable" in shown.stdout
        as_json = json.loads(cli(target, "notify", "test", "--token", TOKEN, "--json").stdout)
        assert as_json[0]["receiver"] == "ops-channel" and as_json[0]["delivered"] is True
    finally:
        app.stop(0)
    bare = serve(tmp_path / "bare")
    try:
        shown = cli(f"127.0.0.1:{bare.port}", "notify", "test", "--token", TOKEN)
        assert shown.returncode == 1 and "no webhooks configured" in shown.stdout
    finally:
        bare.stop(0)


def test_a_failing_stable_with_no_rollout_alerts_once_and_resolves_once(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    # Non-default: every idle call traced, a 2 s window looked at every 0.1 s, so the test
    # takes seconds; the crossing logic is the default's.
    app = serve(
        tmp_path,
        idle_trace_ratio=1.0,
        notifications={
            "webhooks": [{"url": receiver.url, "events": ["stable.alert.*"]}],
            "stable_error_window_seconds": 2.0,
            "alert_tick_seconds": 0.1,
        },
    )
    failing = {"rate": 1.0}  # share of rows past the faulty model's threshold

    def rows(rng: np.random.Generator) -> np.ndarray:
        row = rng.standard_normal((1, 4)).astype(np.float32)
        row[0, 0] = 5.0 if rng.random() < failing["rate"] else 0.0
        return row

    try:
        # Version 3 fails on rows past the threshold; make it stable (promote it).
        build_classifier_faulty(app.config.models_dir / "classifier" / "3" / "model.onnx")
        reload(app)
        with admin(app) as a:
            a.start("classifier", "3", canary_ppm=1_000_000, no_guard=True)
            a.transition("promote", "classifier")
        with Load(app, rows=rows) as load:
            wait_for(lambda: receiver.events(), timeout=30, message="the stable alert")
            failing["rate"] = 0.0
            wait_for(lambda: len(receiver.events()) >= 2, timeout=30, message="its recovery")
        assert load.failed > 0
    finally:
        app.stop(0)
    firing, resolved = receiver.events()  # once each, not once per evaluation
    assert (firing["type"], firing["severity"]) == ("stable.alert.firing", "critical")
    assert firing["details"]["stable_version"] == "3" and firing["details"]["error_rate"] >= 0.05
    assert firing["details"]["trace_ids"], "example trace ids of failing calls"
    assert firing["summary"].startswith("stable version 3 is failing:")
    assert (resolved["type"], resolved["details"]["stable_version"]) == (
        "stable.alert.resolved",
        "3",
    )


def test_a_receiver_that_answers_garbage_is_a_failed_attempt_not_a_crash() -> None:
    """Not HTTP at all (BadStatusLine inside urllib): the sender sees an OSError it retries and
    counts, like a refused connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"garbage\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(OSError, match="not an HTTP answer"):
            post(f"http://127.0.0.1:{port}/hook", b"{}", {}, timeout=5)
    finally:
        thread.join(5)
        listener.close()
