"""The fleet-wide model repository: what one replica loads or unloads, every replica does.

Keys under the store's prefix P:

    P/repository/<model>   the desired versions of the model (JSON), written by the replica
                           an operator loaded or unloaded through: its ready set after the call
    P/ready/<replica>      which versions of every model are ready on that replica (JSON),
                           bound to the replica's lease (presence)

Every replica polls P/repository/ (one range read every `poll_s`) and reconciles with its
own model directory: it loads each desired version it lacks and unloads each ready one that
is no longer desired (unless routing uses it here). A model without a desired set is left as
its model directory says.

Admission: a command that sends a version more traffic (rollout.admission) commits only when
every live replica has published that version as ready; otherwise FailedPrecondition names
the replicas that lack it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.errors import CanaryServeError, FailedPrecondition, StoreUnavailable
from server.fleet.client import EtcdClient, prefix_end
from server.rollout.admission import needs_ready
from server.rollout.controller import RolloutController
from server.rollout.state import Command, RolloutState
from server.serving.registry import Registry

__all__ = ["FleetRepository", "missing_on"]

log = logging.getLogger(__name__)


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
    ) -> None:
        self._client = client
        self._desired = root + b"repository/"
        self._ready = root + b"ready/"
        self.identity = identity
        self._registry = registry
        self._rollouts = rollouts
        self.poll_s = poll_s
        self._applied: dict[str, int] = {}  # model -> mod_revision of the desired set applied
        self._held: dict[tuple[str, str], str] = {}  # (model, version) kept loaded, and why
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- recording an operator's load or unload --

    def record(self, model: str) -> None:
        """The model's ready set here becomes the fleet's desired set (after a load/unload)."""
        versions = sorted(self._registry.ready_versions(model), key=int)
        doc = {"versions": versions, "replica": self.identity, "at": time.time()}
        response = self._client.put(
            rpc.PutRequest(key=self._desired + model.encode(), value=json.dumps(doc).encode())
        )
        # Ours already: no need to reconcile against it.
        self._applied[model] = int(response.header.revision)

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
        self._thread = threading.Thread(
            target=self._loop, name="canaryserve-fleet-repository", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.reconcile()
            except (StoreUnavailable, grpc.RpcError) as exc:
                log.debug("fleet repository unreadable: %s", exc)
            except Exception:
                log.exception("fleet repository reconciliation failed")

    def reconcile(self) -> None:
        """Apply every desired set that changed since this replica last applied it."""
        kvs = self._client.range(
            rpc.RangeRequest(key=self._desired, range_end=prefix_end(self._desired))
        ).kvs
        for kv in kvs:
            model = kv.key[len(self._desired) :].decode()
            if self._applied.get(model) == kv.mod_revision:
                continue
            desired = set(json.loads(kv.value)["versions"])
            if self._apply(model, desired):
                self._applied[model] = int(kv.mod_revision)

    def _apply(self, model: str, desired: set[str]) -> bool:
        """Load what is desired and missing, unload what is ready and not desired; True when
        done (a failed load is final until the desired set changes: readiness shows it)."""
        ready = (
            set(self._registry.ready_versions(model)) if model in self._registry.models() else set()
        )
        for version in sorted(desired - ready, key=int):
            try:
                self._registry.load(model, version)
                log.info("model %s version %s loaded for the fleet", model, version)
            except CanaryServeError as exc:
                log.warning("model %s version %s not loaded here: %s", model, version, exc)
        for version in sorted(ready - desired, key=int):
            why = self._rollouts.in_use(model).get(version)
            if why is not None:
                if self._held.get((model, version)) != why:  # said once, not every poll
                    log.warning("model %s version %s stays loaded here: %s", model, version, why)
                    self._held[(model, version)] = why
                return False  # retried at the next poll (e.g. after the rollback)
            self._held.pop((model, version), None)
            self._registry.unload(model, version)
            log.info("model %s version %s unloaded for the fleet", model, version)
        return True
