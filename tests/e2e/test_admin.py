"""The AdminService as an operator sees it: a real server, AdminClient and InferenceClient.

Every test gets its own server (start-up takes well under a second), so rollouts, revisions
and the audit log start from the same place: classifier stable "2", no rollout.
"""

from __future__ import annotations

import itertools
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.app import App
from tests.support.servers import make_repository, start_app
from tests.support.waiting import WAIT, wait_for

TOKENS = {"alice": "tok-a", "bob": "tok-b"}
X = np.zeros((1, 4), dtype=np.float32)
KEYS = [f"user-{i}" for i in range(400)]
EU = pb.CohortRule(metadata_key="x-region", value="eu", target=pb.COHORT_TARGET_CANDIDATE)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    # counter gets a second version so two models can have a rollout at once (kill switch).
    repo = make_repository(tmp_path / "repo")
    shutil.copytree(repo / "counter" / "1", repo / "counter" / "2")
    app = start_app(tmp_path, models_dir=repo, admin_tokens=TOKENS)
    yield app
    app.stop(0)


@pytest.fixture
def target(server: App) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def admin(target: str) -> Iterator[AdminClient]:
    with AdminClient(open_channel(target), "tok-a") as client:
        yield client


@pytest.fixture
def infer(target: str) -> Iterator[InferenceClient]:
    with InferenceClient(target) as client:
        yield client


def error_of(call: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


def version_of(infer: InferenceClient, key: str | None) -> str:
    return infer.infer("classifier", {"input": X}, routing_key=key).version


def operations(admin: AdminClient, model: str = "classifier") -> list[str]:
    return [e.operation for e in admin.audit(model)]


# --------------------------------------------------------------------------- the stage cycle


def test_full_cycle_shadow_then_5_then_10_percent_then_promote(
    admin: AdminClient, infer: InferenceClient
) -> None:
    r0 = admin.get("classifier")
    assert (r0.stable_version, r0.phase, r0.candidate_version) == ("2", pb.PHASE_IDLE, "")

    started = admin.start("classifier", "1", shadow_ppm=100_000, reason="try v1")
    assert started.changed
    r = started.rollout
    assert (r.phase, r.candidate_version, r.canary_weight_ppm, r.shadow_rate_ppm) == (
        pb.PHASE_SHADOW,
        "1",
        0,
        100_000,
    )
    assert r.revision == r0.revision + 1
    # Shadow only: callers never see the candidate.
    assert {version_of(infer, k) for k in KEYS[:50]} == {"2"}

    r = admin.set_weight("classifier", 50_000).rollout
    assert (r.phase, r.canary_weight_ppm, r.revision) == (pb.PHASE_CANARY, 50_000, r0.revision + 2)
    r = admin.set_weight("classifier", 100_000).rollout
    assert (r.phase, r.canary_weight_ppm, r.revision) == (pb.PHASE_CANARY, 100_000, r0.revision + 3)

    r = admin.transition("promote", "classifier", reason="looks good")
    assert (r.phase, r.stable_version, r.candidate_version) == (pb.PHASE_IDLE, "1", "")
    assert (r.previous_stable_version, r.last_candidate_version) == ("2", "1")
    assert (r.canary_weight_ppm, r.shadow_rate_ppm, r.revision) == (0, 0, r0.revision + 4)
    assert admin.get("classifier") == r

    answer = infer.infer("classifier", {"input": X}, routing_key="user-1")
    assert (answer.version, answer.stage, answer.reason) == ("1", "stable", "no_rollout")
    assert version_of(infer, None) == "1"
    assert operations(admin) == ["adopt", "start", "set_weight", "set_weight", "promote"]


def test_rollback_sends_every_key_back_to_stable(
    admin: AdminClient, infer: InferenceClient
) -> None:
    admin.start("classifier", "1", canary_ppm=1_000_000)
    answer = infer.infer("classifier", {"input": X}, routing_key="user-1")
    assert (answer.version, answer.stage, answer.reason) == ("1", "canary", "hash")

    r = admin.transition("rollback", "classifier", reason="errors up")
    assert (r.phase, r.stable_version, r.candidate_version) == (pb.PHASE_ROLLED_BACK, "2", "")
    assert r.last_candidate_version == "1"
    assert {version_of(infer, k) for k in KEYS[:50]} == {"2"}
    answer = infer.infer("classifier", {"input": X}, routing_key="user-1")
    assert (answer.stage, answer.reason) == ("stable", "no_rollout")

    # Rolling back again is a no-op, not an error.
    again = admin.transition("rollback", "classifier")
    assert again.revision == r.revision
    # And a new rollout can start from the rolled-back phase.
    assert admin.start("classifier", "1", canary_ppm=10_000).rollout.phase == pb.PHASE_CANARY


def test_pause_and_resume_flip_paused_and_leave_routing_alone(
    admin: AdminClient, infer: InferenceClient
) -> None:
    admin.start("classifier", "1", canary_ppm=500_000)
    before = {k: version_of(infer, k) for k in KEYS[:60]}

    paused = admin.transition("pause", "classifier")
    assert paused.paused and paused.phase == pb.PHASE_CANARY
    assert admin.transition("pause", "classifier").revision == paused.revision  # idempotent
    assert {k: version_of(infer, k) for k in KEYS[:60]} == before

    resumed = admin.transition("resume", "classifier")
    assert not resumed.paused
    assert resumed.revision == paused.revision + 1
    assert {k: version_of(infer, k) for k in KEYS[:60]} == before
    assert operations(admin)[-3:] == ["start", "pause", "resume"]


# --------------------------------------------------------------------------- refusals


def test_promote_without_candidate_is_failed_precondition_with_reason(admin: AdminClient) -> None:
    err = error_of(lambda: admin.transition("promote", "classifier"))
    assert err.code == "FAILED_PRECONDITION"
    assert "no candidate" in err.details and "start a rollout first" in err.details


def test_start_with_the_stable_version_is_failed_precondition(admin: AdminClient) -> None:
    err = error_of(lambda: admin.start("classifier", "2"))
    assert err.code == "FAILED_PRECONDITION"
    assert "'2' is already stable" in err.details


def test_start_with_unknown_version_is_failed_precondition_listing_ready(
    admin: AdminClient,
) -> None:
    err = error_of(lambda: admin.start("classifier", "9"))
    assert err.code == "FAILED_PRECONDITION"
    assert "'9' is not loaded and ready" in err.details and "ready: 1, 2" in err.details


def test_second_start_while_a_candidate_is_active_is_refused(admin: AdminClient) -> None:
    admin.start("classifier", "1", canary_ppm=10_000)
    err = error_of(lambda: admin.start("classifier", "1", canary_ppm=20_000))
    assert err.code == "FAILED_PRECONDITION"
    assert "candidate '1' is active" in err.details


def test_repeating_the_same_start_is_a_no_op_as_the_proto_documents(admin: AdminClient) -> None:
    # admin.proto, StartRolloutResponse.changed: "False when the call changed nothing (a
    # repeated call, or a dry run)". A deploy tool that retries a start after a timeout must
    # not be told the rollout it just started is in the way.
    first = admin.start("classifier", "1", canary_ppm=10_000, cohort_rules=[EU])
    again = admin.start("classifier", "1", canary_ppm=10_000, cohort_rules=[EU])
    assert not again.changed
    assert again.rollout == first.rollout


@pytest.mark.parametrize("action", ["rollback", "pause", "resume"])
def test_stage_changes_without_candidate_are_failed_precondition(
    admin: AdminClient, action: str
) -> None:
    err = error_of(lambda: admin.transition(action, "classifier"))
    assert err.code == "FAILED_PRECONDITION"
    assert f"cannot {action} model 'classifier'" in err.details


def test_set_weight_without_candidate_is_failed_precondition(admin: AdminClient) -> None:
    err = error_of(lambda: admin.set_weight("classifier", 10_000))
    assert err.code == "FAILED_PRECONDITION"


def test_unspecified_cohort_target_is_invalid_argument(admin: AdminClient) -> None:
    rule = pb.CohortRule(metadata_key="x-region", value="eu")  # target left UNSPECIFIED
    err = error_of(lambda: admin.start("classifier", "1", cohort_rules=[rule]))
    assert err.code == "INVALID_ARGUMENT"
    assert "x-region" in err.details and "COHORT_TARGET_CANDIDATE" in err.details
    assert admin.get("classifier").phase == pb.PHASE_IDLE


def test_weight_above_one_million_ppm_is_invalid_argument(admin: AdminClient) -> None:
    err = error_of(lambda: admin.start("classifier", "1", canary_ppm=1_000_001))
    assert err.code == "INVALID_ARGUMENT" and "0..1000000" in err.details
    admin.start("classifier", "1", canary_ppm=10_000)
    err = error_of(lambda: admin.set_weight("classifier", 1_000_001))
    assert err.code == "INVALID_ARGUMENT" and "canary_ppm" in err.details
    err = error_of(lambda: admin.set_shadow("classifier", 2_000_000))
    assert err.code == "INVALID_ARGUMENT" and "shadow_ppm" in err.details
    assert admin.get("classifier").canary_weight_ppm == 10_000


def test_unknown_model_is_not_found(admin: AdminClient) -> None:
    calls: list[Callable[[], object]] = [
        lambda: admin.get("nope"),
        lambda: admin.start("nope", "1"),
        lambda: admin.set_weight("nope", 10),
        lambda: admin.transition("promote", "nope"),
        lambda: admin.route("nope", "user-1"),
    ]
    for call in calls:
        err = error_of(call)
        assert err.code == "NOT_FOUND"
        assert "'nope'" in err.details and "classifier" in err.details


# --------------------------------------------------------------------------- compare-and-set


def test_stale_expected_revision_is_aborted_and_changes_nothing(admin: AdminClient) -> None:
    rev = admin.start("classifier", "1", canary_ppm=10_000).rollout.revision
    admin.set_weight("classifier", 20_000, expected_revision=rev)
    err = error_of(lambda: admin.set_weight("classifier", 30_000, expected_revision=rev))
    assert err.code == "ABORTED"
    assert f"revision {rev + 1}, not {rev}" in err.details
    r = admin.get("classifier")
    assert (r.canary_weight_ppm, r.revision) == (20_000, rev + 1)
    err = error_of(lambda: admin.transition("promote", "classifier", expected_revision=rev))
    assert err.code == "ABORTED"


def race_set_weight(admin: AdminClient, writers: int, base_ppm: int) -> tuple[list[int], int]:
    """`writers` threads each read the revision, then all set a distinct weight at once with
    that revision as expected_revision. Returns (weights that won, number ABORTED)."""
    barrier = threading.Barrier(writers)
    wins: list[int] = []
    aborted: list[ClientError] = []
    other: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            revision = admin.get("classifier").revision
            barrier.wait()  # everyone has read before anyone writes
            admin.set_weight("classifier", base_ppm + i, expected_revision=revision)
            wins.append(base_ppm + i)
        except ClientError as exc:
            (aborted if exc.code == "ABORTED" else other).append(exc)
        except BaseException as exc:
            other.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert other == []
    return wins, len(aborted)


def test_concurrent_compare_and_set_exactly_one_writer_wins_per_revision(
    admin: AdminClient,
) -> None:
    admin.start("classifier", "1", canary_ppm=10_000)
    rounds = 3
    for round_ in range(rounds):
        start_rev = admin.get("classifier").revision
        wins, aborted = race_set_weight(admin, writers=8, base_ppm=100_000 * (round_ + 1))
        assert len(wins) == 1 and aborted == 7
        r = admin.get("classifier")
        assert (r.revision, r.canary_weight_ppm) == (start_rev + 1, wins[0])
    assert operations(admin).count("set_weight") == rounds


# --------------------------------------------------------------------------- idempotency, dry run


def test_same_weight_twice_changes_once_and_audits_once(admin: AdminClient) -> None:
    admin.start("classifier", "1", canary_ppm=10_000)
    rows = len(admin.audit())
    first = admin.set_weight("classifier", 50_000)
    second = admin.set_weight("classifier", 50_000)
    assert first.changed and not second.changed
    assert second.rollout.revision == first.rollout.revision
    assert len(admin.audit()) == rows + 1


def test_dry_run_validates_and_changes_nothing(admin: AdminClient) -> None:
    before = admin.get("classifier")
    rows = [e.id for e in admin.audit()]

    preview = admin.start("classifier", "1", canary_ppm=50_000, dry_run=True)
    assert not preview.changed
    assert (preview.rollout.phase, preview.rollout.candidate_version) == (pb.PHASE_CANARY, "1")
    assert admin.get("classifier") == before
    # A dry run is validated like the real call.
    assert error_of(lambda: admin.start("classifier", "2", dry_run=True)).code == (
        "FAILED_PRECONDITION"
    )

    live = admin.start("classifier", "1", canary_ppm=50_000).rollout
    rows = [e.id for e in admin.audit()]
    assert not admin.set_weight("classifier", 900_000, dry_run=True).changed
    promoted = admin.transition("promote", "classifier", dry_run=True)
    assert promoted.stable_version == "1"
    assert admin.kill_switch(dry_run=True)[0].phase == pb.PHASE_ROLLED_BACK
    assert admin.get("classifier") == live
    assert [e.id for e in admin.audit()] == rows


def test_kill_switch_rolls_back_every_active_model(admin: AdminClient) -> None:
    admin.start("classifier", "1", canary_ppm=200_000)
    admin.start("counter", "1", shadow_ppm=500_000)  # counter's stable is its highest, 2
    rolled = admin.kill_switch(reason="incident 42")
    assert sorted(r.model for r in rolled) == ["classifier", "counter"]
    assert all(r.phase == pb.PHASE_ROLLED_BACK for r in rolled)
    phases = {r.model: r.phase for r in admin.rollouts()}
    assert phases == {
        "classifier": pb.PHASE_ROLLED_BACK,
        "counter": pb.PHASE_ROLLED_BACK,
        "shouter": pb.PHASE_IDLE,
    }
    rows = [e for e in admin.audit() if e.operation == "kill_switch"]
    assert sorted(e.model for e in rows) == ["classifier", "counter"]
    assert all(e.actor == "alice" and e.reason == "incident 42" for e in rows)
    assert admin.kill_switch() == []  # nothing left to roll back


def test_audit_names_the_token_as_actor_and_keeps_reason(admin: AdminClient, target: str) -> None:
    admin.start("classifier", "1", canary_ppm=10_000, reason="ticket-7: try v1")
    with AdminClient(open_channel(target), "tok-b") as bob:
        bob.set_weight("classifier", 20_000, reason="ramp")
    start, weight = admin.audit("classifier")[-2:]
    assert (start.actor, start.operation, start.reason) == ("alice", "start", "ticket-7: try v1")
    assert (weight.actor, weight.operation, weight.reason) == ("bob", "set_weight", "ramp")
    assert '"canary_ppm":10000' in weight.before_json
    assert '"canary_ppm":20000' in weight.after_json
    assert start.id < weight.id and start.at.ToNanoseconds() <= weight.at.ToNanoseconds()


# --------------------------------------------------------------------------- routing


def test_half_weight_splits_keys_about_evenly_and_each_key_is_sticky(
    admin: AdminClient, infer: InferenceClient
) -> None:
    admin.start("classifier", "1", canary_ppm=500_000)
    first = {k: infer.infer("classifier", {"input": X}, routing_key=k) for k in KEYS}
    share = sum(r.version == "1" for r in first.values()) / len(KEYS)
    assert 0.40 <= share <= 0.60
    for r in first.values():
        assert (r.stage, r.reason) == (("canary" if r.version == "1" else "stable"), "hash")
    assert {k: version_of(infer, k) for k in KEYS} == {k: r.version for k, r in first.items()}


def test_ramp_from_5_to_10_percent_keeps_every_canary_key(
    admin: AdminClient, infer: InferenceClient
) -> None:
    admin.start("classifier", "1", canary_ppm=50_000)
    at_5 = {k for k in KEYS if version_of(infer, k) == "1"}
    admin.set_weight("classifier", 100_000)
    at_10 = {k for k in KEYS if version_of(infer, k) == "1"}
    assert at_5  # ~20 of 400
    assert at_5 <= at_10
    assert len(at_10) > len(at_5)


def test_keyless_requests_get_stable_with_reason_no_key(
    admin: AdminClient, infer: InferenceClient
) -> None:
    admin.start("classifier", "1", canary_ppm=1_000_000)
    for _ in range(10):
        answer = infer.infer("classifier", {"input": X})
        assert (answer.version, answer.stage, answer.reason) == ("2", "stable", "no_key")


def test_pinned_version_answers_with_reason_pinned(
    admin: AdminClient, infer: InferenceClient
) -> None:
    answer = infer.infer("classifier", {"input": X}, version="1", routing_key="user-1")
    assert (answer.version, answer.stage, answer.reason) == ("1", "loaded", "pinned")
    admin.start("classifier", "1", canary_ppm=10_000)
    answer = infer.infer("classifier", {"input": X}, version="1")
    assert (answer.version, answer.stage, answer.reason) == ("1", "canary", "pinned")
    answer = infer.infer("classifier", {"input": X}, version="2", routing_key="user-1")
    assert (answer.version, answer.stage, answer.reason) == ("2", "stable", "pinned")


def test_cohort_rule_on_region_sends_eu_to_the_candidate(
    admin: AdminClient, infer: InferenceClient, target: str
) -> None:
    admin.start("classifier", "1", cohort_rules=[EU])  # weight 0: only the cohort sees v1
    with (
        InferenceClient(target, metadata=[("x-region", "eu")]) as eu,
        InferenceClient(target, metadata=[("x-region", "us")]) as us,
    ):
        for key in [None, *KEYS[:20]]:
            answer = eu.infer("classifier", {"input": X}, routing_key=key)
            assert (answer.version, answer.stage, answer.reason) == ("1", "canary", "cohort")
            assert us.infer("classifier", {"input": X}, routing_key=key).version == "2"
            assert version_of(infer, key) == "2"
    assert admin.route("classifier", "user-1", {"x-region": "eu"}).reason == "cohort"
    rules = admin.get("classifier").cohort_rules
    assert [(r.metadata_key, r.value, r.target) for r in rules] == [
        ("x-region", "eu", pb.COHORT_TARGET_CANDIDATE)
    ]


def test_route_rpc_agrees_with_real_inference(admin: AdminClient, infer: InferenceClient) -> None:
    admin.start("classifier", "1", canary_ppm=300_000, shadow_ppm=200_000)
    for key in KEYS[:50]:
        predicted = admin.route("classifier", key)
        answer = infer.infer("classifier", {"input": X}, routing_key=key)
        assert (predicted.version, predicted.stage, predicted.reason) == (
            answer.version,
            answer.stage,
            answer.reason,
        )
        assert 0.0 <= predicted.position < 1.0
    keyless = admin.route("classifier", "")
    assert (keyless.version, keyless.reason) == ("2", "no_key")


# --------------------------------------------------------------------------- watch


def test_watch_stream_sees_every_change_in_order(admin: AdminClient, target: str) -> None:
    events: queue.Queue[pb.WatchRolloutsResponse] = queue.Queue()
    failures: list[BaseException] = []
    watcher = AdminClient(open_channel(target), "tok-b")

    def consume() -> None:
        try:
            for event in watcher.watch():
                events.put(event)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        admin.start("classifier", "1")
        # The stream is live once it delivers something: nudge until it does.
        nudges = itertools.count(1)
        wait_for(
            lambda: not events.empty() or failures,
            message="the watch stream delivered an event",
            nudge=lambda: admin.set_shadow("classifier", next(nudges)),
            poll=0.05,
        )

        admin.set_weight("classifier", 10_000)
        admin.set_weight("classifier", 10_000)  # a no-op: no event
        admin.transition("pause", "classifier")
        admin.transition("resume", "classifier")
        admin.set_weight("classifier", 250_000)
        admin.transition("promote", "classifier")
        seen: list[pb.WatchRolloutsResponse] = []
        while not seen or seen[-1].audit.operation != "promote":
            seen.append(events.get(timeout=WAIT))
    finally:
        watcher.close()
        thread.join(WAIT)
    assert not failures
    # The start and the nudges may or may not have reached the stream: set them aside.
    got = [e for e in seen if e.audit.operation not in ("start", "set_shadow")]
    assert [e.audit.operation for e in got] == [
        "set_weight",
        "pause",
        "resume",
        "set_weight",
        "promote",
    ]
    sequences = [e.sequence for e in seen]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    revisions = [e.rollout.revision for e in seen]
    assert revisions == list(range(revisions[0], revisions[0] + len(revisions)))
    assert got[0].rollout.canary_weight_ppm == 10_000
    assert got[-1].rollout.stable_version == "1"
    assert all(e.audit.actor == "alice" and e.rollout.model == "classifier" for e in seen)
    assert events.empty()


# --------------------------------------------------------------------------- under load


def test_weight_changes_under_inference_load_fail_no_call(admin: AdminClient, target: str) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []
    answered: list[str] = []
    workers = 4
    per_worker = [0] * workers  # calls each worker has had answered

    def load(worker: int) -> None:
        with InferenceClient(target) as client:
            i = 0
            while not stop.is_set():
                key = f"load-{worker}-{i % 200}"
                try:
                    answered.append(version_of(client, key))
                    per_worker[worker] += 1
                except BaseException as exc:
                    failures.append(exc)
                i += 1

    def calls_answered(more: int) -> None:
        """Wait until every worker has had `more` further calls answered (or one failed)."""
        goal = [n + more for n in per_worker]
        wait_for(
            lambda: failures or all(n >= g for n, g in zip(per_worker, goal, strict=True)),
            message=f"{more} more calls answered by each of {workers} workers",
        )

    threads = [threading.Thread(target=load, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    try:
        calls_answered(5)  # stable only, before the rollout
        admin.start("classifier", "1", canary_ppm=10_000)
        for ppm in (50_000, 250_000, 500_000, 1_000_000):
            calls_answered(5)
            admin.set_weight("classifier", ppm)
        calls_answered(5)
        admin.transition("promote", "classifier")
        calls_answered(2)  # each worker's last call began after the promotion
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
    assert failures == []
    assert len(answered) > 100
    assert {"1", "2"} <= set(answered)
    assert answered[-1] == "1"
