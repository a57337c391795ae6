"""Fleet outcomes against a fake etcd: a round that encodes only the last two slots publishes
exactly what encoding everything would, and a reader that fetches only changed pieces reads
exactly what a full read would."""

from __future__ import annotations

import logging
import random
from typing import cast

import pytest

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from protos.etcd.mvccpb import kv_pb2
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient
from server.fleet.outcomes import FleetOutcomes
from server.outcomes.publication import ReplicaOutcomes, join, split
from server.outcomes.windows import OutcomeWindows
from server.testing import FakeClock

START = 1_800_000_000.0


class FakeKV:
    """Keys with their mod revisions; ranges honour keys_only and min_mod_revision."""

    def __init__(self) -> None:
        self.keys: dict[bytes, tuple[bytes, int]] = {}
        self.revision = 0
        self.values_read = 0

    def put_all(self, keys: dict[bytes, bytes], prefix: bytes) -> None:
        """What a presence round leaves in etcd: changed keys put, dropped keys deleted."""
        for k in [k for k in self.keys if k.startswith(prefix) and k not in keys]:
            del self.keys[k]
        for k, v in keys.items():
            if self.keys.get(k, (None, 0))[0] != v:
                self.revision += 1
                self.keys[k] = (v, self.revision)

    def range(self, request: rpc.RangeRequest) -> rpc.RangeResponse:
        out = rpc.RangeResponse()
        for k in sorted(self.keys):
            value, mod = self.keys[k]
            if not request.key <= k < request.range_end or mod < request.min_mod_revision:
                continue
            kv = kv_pb2.KeyValue(key=k, mod_revision=mod)
            if not request.keys_only:
                kv.value = value
                self.values_read += 1
            out.kvs.append(kv)
        return out


def recorder(clock: FakeClock) -> OutcomeWindows:
    windows = OutcomeWindows(clock=clock)
    windows.claim("m", "conversion", "binary", 32)
    windows.claim("m", "revenue", "real", 32)
    return windows


def report(windows: OutcomeWindows, rng: random.Random) -> None:
    version = rng.choice(["1", "2"])
    if rng.random() < 0.5:
        windows.add("m", version, "conversion", float(rng.random() < 0.3), rng.random() < 0.9)
    else:
        windows.add("m", version, "revenue", round(rng.uniform(0, 50), 2), True)


def test_incremental_rounds_publish_what_a_full_encoding_would() -> None:
    clock = FakeClock(now=START)
    windows = recorder(clock)
    fleet = FleetOutcomes(
        cast(EtcdClient, None), b"/p/", "r1", windows, lambda: [], horizon_s=7200, clock=clock
    )
    rng = random.Random(5)
    for _ in range(400):  # about 4 hours: slots finish, and leave the 2 h horizon
        for _ in range(rng.randint(0, 5)):
            report(windows, rng)
            clock.advance(rng.uniform(0, 10))
        keys = fleet.publication()
        full = split(fleet.local("m"))
        assert {k.rpartition(b"/")[2].decode(): v.decode() for k, v in keys.items()} == full


def test_a_reader_fetches_only_changed_pieces_and_reads_what_a_full_read_would() -> None:
    clock = FakeClock(now=START)
    kv = FakeKV()
    windows = {name: recorder(clock) for name in ("r1", "r2")}
    fleets = {
        name: FleetOutcomes(cast(EtcdClient, kv), b"/p/", name, w, lambda: ["m"], clock=clock)
        for name, w in windows.items()
    }
    rng = random.Random(6)
    for _ in range(300):
        for _ in range(rng.randint(0, 4)):
            report(windows["r2"], rng)
            clock.advance(rng.uniform(0, 20))
        kv.put_all(fleets["r2"].publication(), b"/p/outcomes/m/r2/")
        clock.advance(0.5)  # past the reader's cache
        before = kv.values_read
        (read,) = fleets["r1"].others("m")
        pieces = {
            k.rpartition(b"/")[2].decode(): v for k, (v, _) in kv.keys.items() if b"/r2/" in k
        }
        expected = join(pieces)
        assert isinstance(expected, ReplicaOutcomes) and read == expected
        assert kv.values_read - before <= 3  # the head and at most the two latest slots


def test_a_piece_that_does_not_parse_is_skipped_not_raised() -> None:
    """A reader never fails a gate or `ab` over a piece it cannot read (a newer replica's)."""
    clock = FakeClock(now=START)
    kv = FakeKV()
    windows = recorder(clock)
    windows.add("m", "2", "conversion", 1.0, True)
    r2 = FleetOutcomes(cast(EtcdClient, kv), b"/p/", "r2", windows, lambda: [], clock=clock)
    r1 = FleetOutcomes(cast(EtcdClient, kv), b"/p/", "r1", recorder(clock), lambda: [], clock=clock)
    keys = r2.publication()
    kv.put_all({**keys, b"/p/outcomes/m/r2/s99": b"{not json"}, b"/p/outcomes/m/r2/")
    (read,) = r1.others("m")
    assert read == r2.local("m")
    assert r1.view.series("m", "2", "conversion", 3600).randomized.n == 1


class _Down(FakeKV):
    def range(self, request: rpc.RangeRequest) -> rpc.RangeResponse:
        raise StoreUnavailable("etcd://127.0.0.1:1/p", "no endpoint answers")


def test_an_unreadable_fleet_keeps_the_last_read_and_warns_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(now=START)
    kv = FakeKV()
    windows = recorder(clock)
    windows.add("m", "2", "conversion", 1.0, True)
    r2 = FleetOutcomes(cast(EtcdClient, kv), b"/p/", "r2", windows, lambda: [], clock=clock)
    kv.put_all(r2.publication(), b"/p/outcomes/m/r2/")
    r1 = FleetOutcomes(cast(EtcdClient, kv), b"/p/", "r1", recorder(clock), lambda: [], clock=clock)
    assert len(r1.others("m")) == 1
    r1._client = cast(EtcdClient, _Down())  # the store goes away
    with caplog.at_level(logging.DEBUG, logger="server.fleet.outcomes"):
        for _ in range(20):  # 10 s of gate evaluations
            clock.advance(0.5)
            r1.others("m")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "this replica's reports" in warnings[0].getMessage()
        assert r1.others("m") == []  # the last read aged out: this replica's alone
        clock.advance(60.0)
        r1.others("m")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
