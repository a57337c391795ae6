"""A replica following the fleet's desired set, with a fake etcd holding that set, a real
registry over FakeRunners and a real rollout controller: a whole-model unload is followed
past the stable version, every unload goes through the controller, failed loads back off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from protos.etcd.mvccpb import kv_pb2
from server.fleet.client import EtcdClient
from server.fleet.repository import FleetRepository
from server.rollout.controller import RolloutController
from server.rollout.state import Rollback, StartRollout
from server.serving.registry import Registry
from server.testing import FakeClock, FakeRunner, MemoryStore

ROOT = b"/fleet/"


class FakeDesired:
    """The desired sets under ROOT/repository/, each with its own mod_revision."""

    def __init__(self) -> None:
        self.kvs: dict[bytes, kv_pb2.KeyValue] = {}
        self.revision = 0

    def set(self, model: str, doc: dict[str, object]) -> None:
        self.revision += 1
        key = ROOT + b"repository/" + model.encode()
        value = json.dumps(doc).encode()
        self.kvs[key] = kv_pb2.KeyValue(key=key, value=value, mod_revision=self.revision)

    def range(self, request: rpc.RangeRequest) -> rpc.RangeResponse:
        return rpc.RangeResponse(kvs=list(self.kvs.values()))


class CountingController(RolloutController):
    unloads: list[tuple[str, str | None]]

    def unload_unused(self, model: str, version: str | None, *args: Any, **kw: Any) -> Any:
        self.unloads.append((model, version))
        return super().unload_unused(model, version, *args, **kw)


class Replica:
    """Model "m" with versions 1, 2, 3 on disk; version 3's file fails to load."""

    def __init__(self, root: Path) -> None:
        for version in "123":
            (root / "m" / version).mkdir(parents=True)
            (root / "m" / version / "model.onnx").write_bytes(b"")
        self.attempts: list[str] = []
        self.registry = Registry(root, self._runner)
        self.registry.load("m", "1")
        self.registry.load("m", "2")
        self.clock = FakeClock(now=1_000.0)
        self.rollouts = CountingController(
            MemoryStore(),
            ready_versions=self.registry.ready_versions,
            publish=lambda table: None,
            clock=self.clock,
        )
        self.rollouts.unloads = []
        self.rollouts.adopt({"m": "1"})
        self.etcd = FakeDesired()
        self.repository = FleetRepository(
            cast(EtcdClient, self.etcd),
            ROOT,
            "b",
            self.registry,
            self.rollouts,
            clock=self.clock,
        )

    def _runner(self, path: Path) -> FakeRunner:
        self.attempts.append(path.parent.name)
        if path.parent.name == "3":
            raise RuntimeError("not an ONNX file")
        return FakeRunner()

    def ready(self) -> set[str]:
        return set(self.registry.ready_versions("m"))


def test_a_whole_model_unload_is_followed_past_the_stable_version(tmp_path: Path) -> None:
    b = Replica(tmp_path)
    b.repository.reconcile()  # no desired set yet: left as its directory says
    assert b.ready() == {"1", "2"}
    b.etcd.set("m", {"versions": [], "others_unloaded": True})  # unloaded through another replica
    b.repository.reconcile()
    assert b.ready() == set()
    assert b.rollouts.unloads == [("m", None)]  # under the controller's lock, as locally
    assert not [e for e in b.rollouts.audit("m") if e.operation == "unload"]  # audited where
    # the operator's call ran, not once more per replica


def test_a_whole_model_unload_waits_while_a_rollout_is_active(tmp_path: Path) -> None:
    b = Replica(tmp_path)
    b.rollouts.execute("m", StartRollout("2", canary_ppm=100_000), actor="t", reason="test")
    b.etcd.set("m", {"versions": [], "others_unloaded": True})
    b.repository.reconcile()
    assert b.ready() == {"1", "2"}  # the rollout is active: held, looked at again
    b.rollouts.execute("m", Rollback(), actor="t", reason="test")
    b.repository.reconcile()
    assert b.ready() == set()


def test_a_held_version_does_not_stop_the_versions_after_it(tmp_path: Path) -> None:
    b = Replica(tmp_path)
    b.etcd.set("m", {"versions": [], "unloaded": ["1", "2"]})
    b.repository.reconcile()
    assert b.ready() == {"1"}  # stable held, 2 unloaded all the same
    assert b.rollouts.unloads == [("m", "1"), ("m", "2")]  # each under the controller's lock
    assert b.repository.followed("m") == 0  # not done: looked at again


def test_a_failed_load_is_tried_again_with_backoff_not_every_poll(tmp_path: Path) -> None:
    b = Replica(tmp_path)
    doc = {"versions": ["2", "3"], "unloaded": ["1"]}
    b.etcd.set("m", doc)  # 1 is stable: held, so the set is never done
    for _ in range(10):
        b.repository.reconcile()
    assert b.attempts.count("3") == 1
    b.clock.advance(1.0)
    for _ in range(10):
        b.repository.reconcile()
    assert b.attempts.count("3") == 2  # then 2 s, 4 s, ... up to 60 s
    b.clock.advance(1.0)
    b.repository.reconcile()
    assert b.attempts.count("3") == 2
    b.etcd.set("m", doc)  # a new desired set: a fresh try at once
    b.repository.reconcile()
    assert b.attempts.count("3") == 3
