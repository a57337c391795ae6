"""Who may call what: admin bearer tokens, the inference token, the generated token, TLS."""

from __future__ import annotations

import itertools
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from protos.canaryserve.admin.v1 import admin_pb2 as pb
from protos.canaryserve.admin.v1 import admin_pb2_grpc as pb_grpc
from server.app import App
from tests.support.servers import start_app
from tests.support.waiting import WAIT, wait_for

X = np.zeros((1, 4), dtype=np.float32)

NO_TOKEN: tuple[tuple[str, str], ...] = ()
WRONG_TOKEN = (("authorization", "Bearer not-the-token"),)
NO_BEARER = (("authorization", "tok-a"),)
VALID = (("authorization", "Bearer tok-a"),)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("auth"), admin_tokens={"alice": "tok-a"})
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def admin_stub(server: App) -> Iterator[pb_grpc.AdminServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.AdminServiceStub(channel)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


# Every unary admin RPC, with the status a caller holding a valid token gets on an idle server.
UNARY = {
    "GetRollout": (pb.GetRolloutRequest(model="classifier"), grpc.StatusCode.OK),
    "ListRollouts": (pb.ListRolloutsRequest(), grpc.StatusCode.OK),
    "StartRollout": (
        pb.StartRolloutRequest(model="classifier", candidate_version="1", dry_run=True),
        grpc.StatusCode.OK,
    ),
    "SetWeight": (
        pb.SetWeightRequest(model="classifier", canary_weight_ppm=1),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    "SetShadow": (
        pb.SetShadowRequest(model="classifier", shadow_rate_ppm=1),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    "Promote": (pb.PromoteRequest(model="classifier"), grpc.StatusCode.FAILED_PRECONDITION),
    "Rollback": (pb.RollbackRequest(model="classifier"), grpc.StatusCode.FAILED_PRECONDITION),
    "Pause": (pb.PauseRequest(model="classifier"), grpc.StatusCode.FAILED_PRECONDITION),
    "Resume": (pb.ResumeRequest(model="classifier"), grpc.StatusCode.FAILED_PRECONDITION),
    "KillSwitch": (pb.KillSwitchRequest(dry_run=True), grpc.StatusCode.OK),
    "Route": (pb.RouteRequest(model="classifier", routing_key="u"), grpc.StatusCode.OK),
    "ListAudit": (pb.ListAuditRequest(), grpc.StatusCode.OK),
}


@pytest.mark.parametrize("method", sorted(UNARY))
@pytest.mark.parametrize(
    "metadata", [NO_TOKEN, WRONG_TOKEN, NO_BEARER], ids=["no-token", "wrong-token", "no-bearer"]
)
def test_unary_admin_call_without_a_valid_token_is_unauthenticated(
    admin_stub: pb_grpc.AdminServiceStub, method: str, metadata: Any
) -> None:
    request, _ = UNARY[method]
    rpc = getattr(admin_stub, method)
    assert code_of(lambda: rpc(request, metadata=metadata, timeout=5)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


@pytest.mark.parametrize("method", sorted(UNARY))
def test_unary_admin_call_with_the_token_is_authorised(
    admin_stub: pb_grpc.AdminServiceStub, method: str
) -> None:
    request, expected = UNARY[method]
    rpc = getattr(admin_stub, method)
    assert code_of(lambda: rpc(request, metadata=VALID, timeout=5)) == expected


def test_bearer_scheme_is_case_insensitive(admin_stub: pb_grpc.AdminServiceStub) -> None:
    metadata = (("authorization", "bearer tok-a"),)
    assert admin_stub.ListRollouts(pb.ListRolloutsRequest(), metadata=metadata, timeout=5).rollouts


def test_unauthenticated_message_says_what_is_missing(admin_stub: pb_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        admin_stub.ListRollouts(pb.ListRolloutsRequest(), timeout=5)
    assert "authorization: Bearer <token>" in missing.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as wrong:
        admin_stub.ListRollouts(pb.ListRolloutsRequest(), metadata=WRONG_TOKEN, timeout=5)
    assert "not valid" in wrong.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "metadata", [NO_TOKEN, WRONG_TOKEN, NO_BEARER], ids=["no-token", "wrong-token", "no-bearer"]
)
def test_watch_stream_without_a_valid_token_is_unauthenticated(
    admin_stub: pb_grpc.AdminServiceStub, metadata: Any
) -> None:
    stream = admin_stub.WatchRollouts(pb.WatchRolloutsRequest(), metadata=metadata, timeout=5)
    assert code_of(lambda: next(stream)) == grpc.StatusCode.UNAUTHENTICATED


def test_watch_stream_with_the_token_delivers_changes(tmp_path: Path) -> None:
    app = start_app(tmp_path, admin_tokens={"alice": "tok-a"})
    target = f"127.0.0.1:{app.port}"
    received: list[pb.WatchRolloutsResponse] = []
    failures: list[BaseException] = []
    try:
        with (
            grpc.insecure_channel(target) as channel,
            AdminClient(open_channel(target), "tok-a") as admin,
        ):
            stream = pb_grpc.AdminServiceStub(channel).WatchRollouts(
                pb.WatchRolloutsRequest(model="classifier"), metadata=VALID, timeout=3 * WAIT
            )

            def consume() -> None:
                try:
                    received.append(next(stream))
                except BaseException as exc:
                    failures.append(exc)

            thread = threading.Thread(target=consume)
            thread.start()
            admin.start("classifier", "1")
            # The stream is live once it delivers: nudge the rollout until it does.
            nudges = itertools.count(1)
            wait_for(
                lambda: received or failures,
                message="the watch stream delivered an event",
                nudge=lambda: admin.set_shadow("classifier", next(nudges), reason="nudge"),
                poll=0.05,
            )
            stream.cancel()
            thread.join(WAIT)
    finally:
        app.stop(0)
    assert not failures
    assert received[0].audit.actor == "alice"
    assert received[0].rollout.model == "classifier"


# --------------------------------------------------------------------------- inference


def test_inference_needs_no_token_by_default(server: App) -> None:
    with InferenceClient(f"127.0.0.1:{server.port}") as client:
        assert client.infer("classifier", {"input": X}).version == "2"
        assert client.ready()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(
        tmp_path_factory.mktemp("guarded"),
        admin_tokens={"alice": "tok-a"},
        inference_token="inf-t",
    )
    yield app
    app.stop(0)


def infer_with(app: App, metadata: tuple[tuple[str, str], ...]) -> str:
    with InferenceClient(f"127.0.0.1:{app.port}", metadata=metadata) as client:
        try:
            client.infer("classifier", {"input": X})
        except ClientError as exc:
            return exc.code
        return "OK"


def test_inference_token_is_required_when_set(guarded: App) -> None:
    assert infer_with(guarded, NO_TOKEN) == "UNAUTHENTICATED"
    assert infer_with(guarded, (("authorization", "Bearer wrong"),)) == "UNAUTHENTICATED"
    assert infer_with(guarded, (("authorization", "inf-t"),)) == "UNAUTHENTICATED"
    assert infer_with(guarded, (("authorization", "Bearer inf-t"),)) == "OK"


def test_inference_token_guards_every_inference_rpc(guarded: App) -> None:
    with InferenceClient(f"127.0.0.1:{guarded.port}") as client:
        for call in (client.live, client.index, lambda: client.metadata("classifier")):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.code == "UNAUTHENTICATED"


def test_admin_token_does_not_work_for_inference(guarded: App) -> None:
    assert infer_with(guarded, VALID) == "UNAUTHENTICATED"


def test_inference_token_does_not_work_for_admin(guarded: App) -> None:
    with (
        AdminClient(open_channel(f"127.0.0.1:{guarded.port}"), "inf-t") as admin,
        pytest.raises(ClientError) as info,
    ):
        admin.rollouts()
    assert info.value.code == "UNAUTHENTICATED"


def test_health_check_needs_no_token(guarded: App) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{guarded.port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


# --------------------------------------------------------------------------- generated token


def test_generated_admin_token_file_is_private_and_reused_after_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start_app(tmp_path / "first", state_dir=state)
    try:
        path = state / "admin.token"
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert len(token) >= 32
        with AdminClient(open_channel(f"127.0.0.1:{first.port}"), token) as admin:
            admin.start("classifier", "1", canary_ppm=10_000)
    finally:
        first.stop(0)

    second = start_app(tmp_path / "second", state_dir=state)
    try:
        assert path.read_text().strip() == token
        with AdminClient(open_channel(f"127.0.0.1:{second.port}"), token) as admin:
            assert admin.get("classifier").canary_weight_ppm == 10_000
            assert admin.audit("classifier")[-1].actor == "generated"
        with (
            AdminClient(open_channel(f"127.0.0.1:{second.port}"), "guess") as wrong,
            pytest.raises(ClientError) as info,
        ):
            wrong.rollouts()
        assert info.value.code == "UNAUTHENTICATED"
    finally:
        second.stop(0)


def test_empty_token_file_does_not_admit_an_empty_bearer_token(tmp_path: Path) -> None:
    # A crash between creating admin.token and writing it leaves an empty file behind.
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin.token").write_text("\n")
    try:
        app = start_app(tmp_path, state_dir=state)
    except Exception as exc:  # refusing to start is an acceptable answer too, if it says why
        assert "admin.token" in str(exc)
        return
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.AdminServiceStub(channel)
            for header in ("Bearer ", "bearer   "):
                try:
                    stub.ListRollouts(
                        pb.ListRolloutsRequest(), metadata=(("authorization", header),), timeout=5
                    )
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
                else:
                    pytest.fail(f"'authorization: {header}' was accepted as an admin token")
    finally:
        app.stop(0)


def test_configured_admin_tokens_mean_no_token_file(tmp_path: Path) -> None:
    app = start_app(tmp_path, admin_tokens={"alice": "tok-a"})
    app.stop(0)
    assert not (tmp_path / "state" / "admin.token").exists()


# --------------------------------------------------------------------------- TLS


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def issue(cwd: Path, name: str, ca: str, usage: str) -> None:
    """An EC key and a certificate for `name` signed by the CA `ca`, for `usage`."""
    ext = cwd / f"{name}.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        f"extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=cwd,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", ext.name,
        cwd=cwd,
    )  # fmt: skip


def make_ca(cwd: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not on PATH")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    issue(d, "server", "ca", "serverAuth")
    issue(d, "client", "ca", "clientAuth")
    make_ca(d, "rogue-ca")
    issue(d, "rogue", "rogue-ca", "clientAuth")
    return d


def status_of(channel: grpc.Channel) -> str:
    with InferenceClient("unused", channel=channel, timeout=3) as client:
        try:
            client.infer("classifier", {"input": X})
        except ClientError as exc:
            return exc.code
        return "OK"


def test_tls_server_serves_tls_clients_and_refuses_plaintext(tmp_path: Path, pki: Path) -> None:
    app = start_app(
        tmp_path,
        admin_tokens={"alice": "tok-a"},
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
    )
    target = f"127.0.0.1:{app.port}"
    try:
        assert status_of(open_channel(target, tls_ca=pki / "ca.pem")) == "OK"
        with AdminClient(open_channel(target, tls_ca=pki / "ca.pem"), "tok-a") as admin:
            assert admin.get("classifier").stable_version == "2"
        assert status_of(grpc.insecure_channel(target)) == "UNAVAILABLE"
        # A client that does not trust the server's CA refuses it.
        assert status_of(open_channel(target, tls_ca=pki / "rogue-ca.pem")) == "UNAVAILABLE"
    finally:
        app.stop(0)


def test_mtls_server_requires_a_client_certificate_from_its_ca(tmp_path: Path, pki: Path) -> None:
    app = start_app(
        tmp_path,
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        tls_client_ca=pki / "ca.pem",
    )
    target = f"127.0.0.1:{app.port}"
    ca = pki / "ca.pem"
    try:
        with_cert = open_channel(
            target, tls_ca=ca, tls_cert=pki / "client.pem", tls_key=pki / "client.key"
        )
        assert status_of(with_cert) == "OK"
        assert status_of(open_channel(target, tls_ca=ca)) == "UNAVAILABLE"
        rogue = open_channel(
            target, tls_ca=ca, tls_cert=pki / "rogue.pem", tls_key=pki / "rogue.key"
        )
        assert status_of(rogue) == "UNAVAILABLE"
        assert status_of(grpc.insecure_channel(target)) == "UNAVAILABLE"
    finally:
        app.stop(0)
