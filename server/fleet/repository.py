"""The fleet-wide model repository: what one replica loads or unloads, every replica does.

Keys under the store's prefix P:

    P/repository/<model>   what operators named for the model (JSON, desired.Desired): each
                           load or unload through any replica changes it by what that call
                           named (compare-and-set on the key's revision)
    P/ready/<replica>      which versions of every model are ready on that replica (JSON),
                           bound to the replica's lease (presence)

Every replica polls P/repository/ (one range read every `poll_s`) and follows each desired set
that changed with its own model directory (desired.plan): it loads each version loaded
through the API that it lacks (a failed load is tried again with backoff, LoadRetries) and
unloads each one unloaded through it, through the rollout controller as a local unload would
(unless routing uses it here: then it is held and looked at again every poll). Versions
nobody named are left as its model directory (and poll mode) say.

Admission: a command that sends a version more traffic (rollout.admission) commits only when
every live replica has published that version as ready; otherwise FailedPrecondition names
the replicas that lack it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.clock import Clock
from server.errors import CanaryServeError, FailedPrecondition, StoreUnavailable
from server.fleet.client import EtcdClient, prefix_end
from server.fleet.desired import Desired, LoadRetries, plan
from server.rollout.admission import needs_ready
from server.rollout.controller import RolloutController
from server.rollout.state import Command, RolloutState
from server.serving.registry import LoadState, Registry
from server.serving.repository import RepositoryChange
from server.ticker import Ticker

__all__ = ["FleetRepository", "missing_on"]

log = logging.getLogger(__name__)

#: Compare-and-set attempts of one record() before it gives up (each loses only to a write).
_RECORD_TRIES = 10


def missing_on(
    readiness: Mapping[str, Mapping[str, list[str]]], model: str, version: str
) -> list[str]:
    """The replicas (of `readiness`: replica -> model -> ready versions) lacking `version`."""
    return sorted(r for r, models in readiness.items() if version not in models.get(model, []))


class FleetRepository:
    """Records loads and unloads for the fleet, reconciles this replica, admits commands."""

    def __init__(
        self,
        client: EtcdClient,
        root: bytes,
        identity: str,
        registry: Registry,
        rollouts: RolloutController,
        *,
        poll_s: float = 0.5,
        retry_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._client = client
        self._desired = root + b"repository/"
        self._ready = root + b"ready/"
        self.identity = identity
        self._registry = registry
        self._rollouts = rollouts
        self.poll_s = poll_s
        self._followed: dict[str, int] = {}  # model -> mod_revision of the set followed in full
        self._working: dict[str, int] = {}  # model -> mod_revision being followed
        self._retries = LoadRetries(clock, first=retry_s, longest=max(retry_s, 60.0))
        self._held: dict[tuple[str, str], str] = {}  # (model, version or "*") kept, and why
        self._ticker = Ticker(
            "canaryserve-fleet-repository",
            poll_s,
            self._reconcile_quietly,
            log=log,
            failure="fleet repository reconciliation failed",
        )

    # -- recording an operator's load or unload --

    def record(self, change: RepositoryChange) -> None:
        """Apply what one load or unload call changed to the model's desired set (desired.py),
        compare-and-set on the key's revision: a concurrent change through another replica
        is read again and kept, never overwritten."""
        key = self._desired + change.model.encode()
        for _ in range(_RECORD_TRIES):
            kvs = self._client.range(rpc.RangeRequest(key=key)).kvs
            before = Desired.from_json(json.loads(kvs[0].value)) if kvs else Desired()
            doc = {
                **before.after(change).to_json(),
                "replica": self.identity,
                "at": time.time(),
            }
            unchanged = rpc.Compare(
                key=key,
                target=rpc.Compare.MOD,
                result=rpc.Compare.EQUAL,
                mod_revision=kvs[0].mod_revision if kvs else 0,
            )
            put = rpc.PutRequest(key=key, value=json.dumps(doc).encode())
            response = self._client.txn(
                rpc.TxnRequest(compare=[unchanged], success=[rpc.RequestOp(request_put=put)])
            )
            if response.succeeded:
                return
        raise StoreUnavailable(
            "etcd",
            f"the fleet's desired versions of model '{change.model}' changed under this call"
            f" {_RECORD_TRIES} times in a row; it ran here: repeat it for the other replicas",
        )

    # -- readiness --

    def ready_here(self) -> dict[str, list[str]]:
        return {
            m: sorted(self._registry.ready_versions(m), key=int) for m in self._registry.models()
        }

    def publication(self) -> dict[bytes, bytes]:
        """This replica's ready versions (a presence.Publication)."""
        doc = json.dumps(self.ready_here(), sort_keys=True).encode()
        return {self._ready + self.identity.encode(): doc}

    def readiness(self) -> dict[str, dict[str, list[str]]]:
        """Every live replica's ready versions by model (this one's as of now)."""
        kvs = self._client.range(
            rpc.RangeRequest(key=self._ready, range_end=prefix_end(self._ready))
        ).kvs
        out = {kv.key[len(self._ready) :].decode(): json.loads(kv.value) for kv in kvs}
        out[self.identity] = self.ready_here()
        return out

    def admit(self, before: RolloutState, command: Command) -> None:
        """Refuse a command whose version is not ready on every live replica (an Admission)."""
        version = needs_ready(before, command)
        if version is None:
            return
        lacking = missing_on(self.readiness(), before.model, version)
        if lacking:
            raise FailedPrecondition(
                f"version {version} of model '{before.model}' is not ready on "
                f"{len(lacking)} replica(s): {', '.join(lacking)}; load it there (every replica"
                " loads what one loads, from its own model directory: check that directory"
                " and `canaryserve status MODEL`), then retry"
            )

    # -- reconciling --

    def start(self) -> None:
        self._ticker.start()

    def close(self) -> None:
        self._ticker.stop(3.0)

    def _reconcile_quietly(self) -> None:
        # etcd out of reach is expected (the next tick tries again); anything else the
        # ticker logs with its traceback.
        try:
            self.reconcile()
        except (StoreUnavailable, grpc.RpcError) as exc:
            log.debug("fleet repository unreadable: %s", exc)

    def reconcile(self) -> None:
        """Follow every desired set that changed since this replica last followed it."""
        kvs = self._client.range(
            rpc.RangeRequest(key=self._desired, range_end=prefix_end(self._desired))
        ).kvs
        for kv in kvs:
            model = kv.key[len(self._desired) :].decode()
            revision = int(kv.mod_revision)
            if self._followed.get(model) == revision:
                continue
            if self._working.get(model) != revision:  # a new desired set: fresh tries
                self._working[model] = revision
                self._retries.forget(model)
            if self._apply(model, Desired.from_json(json.loads(kv.value))):
                self._followed[model] = revision

    def followed(self, model: str) -> int:
        """The revision of the model's desired set this replica has followed in full (0:
        none yet)."""
        return self._followed.get(model, 0)

    def desired(self, model: str) -> tuple[int, Desired]:
        """The model's desired set and its revision, as etcd holds it now (0: no set yet)."""
        kvs = self._client.range(rpc.RangeRequest(key=self._desired + model.encode())).kvs
        if not kvs:
            return 0, Desired()
        return int(kvs[0].mod_revision), Desired.from_json(json.loads(kvs[0].value))

    def _apply(self, model: str, desired: Desired) -> bool:
        """Load and unload what the desired set names (desired.plan); True when done. A
        version routing uses here is held and a failed load waits for its next try
        (LoadRetries): either leaves the set not done, so it is looked at again."""
        todo = plan(desired, self._registry.ready_versions(model))
        done = True
        for version in todo.load:
            done &= self._load(model, version)
        if todo.whole:
            done &= self._unload(model, None)
        else:
            for version in todo.unload:
                done &= self._unload(model, version)
        return done

    def _load(self, model: str, version: str) -> bool:
        if not self._retries.due(model, version):
            return False
        try:
            loaded = self._registry.load(model, version)
            bad = [mv for mv in loaded if mv.state is not LoadState.READY]
            failure = "; ".join(mv.reason or mv.state.value for mv in bad) if bad else None
        except CanaryServeError as exc:
            failure = str(exc)
        if failure is None:
            self._retries.loaded(model, version)
            log.info("model %s version %s loaded for the fleet", model, version)
            return True
        wait = self._retries.failed(model, version)
        log.warning(
            "model %s version %s not loaded here (attempt %d, next in %.0f s): %s",
            model,
            version,
            self._retries.failures(model, version),
            wait,
            failure,
        )
        return False

    def _unload(self, model: str, version: str | None) -> bool:
        """Unload through the rollout controller's write lock, so no rollout starts using the
        version between the check and the unload; False while routing uses it here."""
        held = (model, version or "*")

        def unload() -> None:
            self._registry.unload(model, version)

        try:
            self._rollouts.unload_unused(
                model,
                version,
                unload,
                actor=f"fleet:{self.identity}",
                reason="following the fleet's desired versions",
                audit=False,  # the operator's call was audited where it ran
            )
        except FailedPrecondition as exc:
            if self._held.get(held) != str(exc):  # said once, not every poll
                log.warning("%s; it stays loaded here until then", exc)
                self._held[held] = str(exc)
            return False
        self._held.pop(held, None)
        log.info("model %s version %s unloaded for the fleet", model, version or "(all)")
        return True
