"""buf-style lint of canaryserve's own API (protos/canaryserve/**), in Python.

The rules are those of buf's STANDARD and COMMENTS categories that matter for this API:

* package: defined, lower_snake_case, versioned (`...v1`, `v1beta1`, ...), and equal to the
  file's directory below protos/ (PACKAGE_DIRECTORY_MATCH);
* file name lower_snake_case;
* services PascalCase ending in `Service`; RPCs PascalCase; each RPC `Xxx` takes its own
  `XxxRequest` and returns its own `XxxResponse`, declared in the same file and used by no
  other RPC;
* messages and enums PascalCase; fields and oneofs lower_snake_case; enum values
  UPPER_SNAKE_CASE, prefixed with the enum's name in UPPER_SNAKE_CASE, the zero value being
  `<PREFIX>_UNSPECIFIED`;
* every service, RPC, message, field, oneof, enum and enum value has a leading comment.

Names are checked on the compiled descriptors clients get (the committed `*_pb2` modules);
comments on the source, compiled with the pinned grpcio-tools protoc and its source info
(the `*_pb2` modules carry none). Triton's `inference` package is the public Open Inference
Protocol, whose names are not ours to change, so it is not linted. When client/node's
devDependency `buf` is installed, `buf lint` runs too, with protos/buf.yaml.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import NoReturn

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
#: The files linted: canaryserve's own API (paths relative to the repository root).
OWN_PROTOS = sorted(p.relative_to(REPO) for p in (PROTOS / "canaryserve").rglob("*.proto"))
BUF = REPO / "client" / "node" / "node_modules" / ".bin" / "buf"

FileProto = descriptor_pb2.FileDescriptorProto

_PASCAL = re.compile(r"^[A-Z][a-zA-Z0-9]*$")
_LOWER_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
_PACKAGE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
#: buf's PACKAGE_VERSION_SUFFIX: v1, v1alpha, v1beta2, v1p1alpha1, v1test ...
_VERSION = re.compile(r"^v\d+(p\d+)?(alpha\d*|beta\d*|test\w*)?$")

# FileDescriptorProto / DescriptorProto / ... field numbers, for source_code_info paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


def upper_snake(pascal: str) -> str:
    """PhaseName → PHASE_NAME (buf's rule for enum value prefixes)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", pascal).upper()


# --- descriptors ----------------------------------------------------------------------------


def compiled(proto: Path) -> FileProto:
    """The descriptor of `proto` as committed in its `*_pb2` module (no source info)."""
    module = importlib.import_module(str(proto.with_suffix("")).replace("/", ".") + "_pb2")
    fd = FileProto()
    module.DESCRIPTOR.CopyToProto(fd)
    return fd


def from_source(proto: Path, include: Path) -> FileProto:
    """`proto` (relative to `include`) compiled by protoc with source_code_info."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "set.pb"
        args = [
            "grpc_tools.protoc",
            f"-I{include}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={target}",
            str(proto),
        ]
        assert protoc.main(args) == 0, f"protoc failed on {proto}"
        files = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()).file
    (fd,) = (f for f in files if f.name == str(proto))
    return fd


def _messages(
    messages: Iterator[descriptor_pb2.DescriptorProto] | list[descriptor_pb2.DescriptorProto],
    prefix: str = "",
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    """Every message, nested ones included, with its dotted name (map entries skipped)."""
    for m in messages:
        if m.options.map_entry:
            continue
        yield prefix + m.name, m
        yield from _messages(list(m.nested_type), f"{prefix}{m.name}.")


def _enums(fd: FileProto) -> Iterator[tuple[str, descriptor_pb2.EnumDescriptorProto]]:
    for e in fd.enum_type:
        yield e.name, e
    for name, m in _messages(list(fd.message_type)):
        for e in m.enum_type:
            yield f"{name}.{e.name}", e


# --- rules on names -------------------------------------------------------------------------


def rule_package(fd: FileProto, root: str) -> list[str]:
    """Defined, lower_snake_case, versioned, and matching the directory below `root`."""
    if not fd.package:
        return [f"{fd.name}: no package"]
    problems = []
    if not _PACKAGE.match(fd.package):
        problems.append(f"package {fd.package} is not lower_snake_case")
    if not _VERSION.match(fd.package.rsplit(".", 1)[-1]):
        problems.append(f"package {fd.package} does not end in a version (e.g. .v1)")
    directory = str(Path(fd.name).parent.relative_to(root)) if root else str(Path(fd.name).parent)
    if directory != fd.package.replace(".", "/"):
        problems.append(f"package {fd.package} is in directory {directory}")
    if not _LOWER_SNAKE.match(Path(fd.name).stem):
        problems.append(f"file name {Path(fd.name).name} is not lower_snake_case")
    return problems


def rule_rpc_messages(fd: FileProto, root: str) -> list[str]:
    """Service names; each RPC Xxx has its own XxxRequest / XxxResponse from this file."""
    problems = []
    local = {f".{fd.package}.{m.name}" for m in fd.message_type}
    used: dict[str, str] = {}
    for service in fd.service:
        if not _PASCAL.match(service.name) or not service.name.endswith("Service"):
            problems.append(f"service {service.name} is not PascalCase ending in Service")
        for rpc in service.method:
            if not _PASCAL.match(rpc.name):
                problems.append(f"rpc {rpc.name} is not PascalCase")
            for kind, type_name in (("Request", rpc.input_type), ("Response", rpc.output_type)):
                want = f".{fd.package}.{rpc.name}{kind}"
                if type_name != want:
                    problems.append(f"rpc {rpc.name}: {kind.lower()} is {type_name}, not {want}")
                elif type_name not in local:
                    problems.append(f"rpc {rpc.name}: {type_name} is not declared in this file")
                if type_name in used:
                    problems.append(
                        f"rpc {rpc.name}: {type_name} is also used by {used[type_name]}"
                    )
                used.setdefault(type_name, rpc.name)
    return problems


def rule_enums(fd: FileProto, root: str) -> list[str]:
    """PascalCase enums; values UPPER_SNAKE with the enum's prefix; zero is PREFIX_UNSPECIFIED."""
    problems = []
    for name, enum in _enums(fd):
        if not _PASCAL.match(enum.name):
            problems.append(f"enum {name} is not PascalCase")
        prefix = upper_snake(enum.name) + "_"
        for value in enum.value:
            if not _UPPER_SNAKE.match(value.name):
                problems.append(f"enum value {name}.{value.name} is not UPPER_SNAKE_CASE")
            if not value.name.startswith(prefix):
                problems.append(f"enum value {name}.{value.name} lacks the prefix {prefix}")
        zero = [v.name for v in enum.value if v.number == 0]
        if zero != [f"{prefix}UNSPECIFIED"]:
            problems.append(f"enum {name}: zero value is {zero}, not {prefix}UNSPECIFIED")
    return problems


def rule_case(fd: FileProto, root: str) -> list[str]:
    """Messages PascalCase; fields and oneofs lower_snake_case."""
    problems = []
    for name, message in _messages(list(fd.message_type)):
        if not _PASCAL.match(message.name):
            problems.append(f"message {name} is not PascalCase")
        for f in message.field:
            if not _LOWER_SNAKE.match(f.name):
                problems.append(f"field {name}.{f.name} is not lower_snake_case")
        for o in message.oneof_decl:
            if not _LOWER_SNAKE.match(o.name):
                problems.append(f"oneof {name}.{o.name} is not lower_snake_case")
    return problems


NAME_RULES: dict[str, Callable[[FileProto, str], list[str]]] = {
    "package": rule_package,
    "rpc_messages": rule_rpc_messages,
    "enums": rule_enums,
    "case": rule_case,
}


# --- the comment rule -----------------------------------------------------------------------


_Element = tuple[tuple[int, ...], str]


def _documented(fd: FileProto) -> Iterator[_Element]:
    """(source_code_info path, description) of every element that needs a comment."""

    def message(
        path: tuple[int, ...], name: str, m: descriptor_pb2.DescriptorProto
    ) -> Iterator[_Element]:
        if m.options.map_entry:
            return
        yield path, f"message {name}"
        for i, f in enumerate(m.field):
            yield (*path, _MSG_FIELD, i), f"field {name}.{f.name}"
        for i, o in enumerate(m.oneof_decl):
            # proto3 `optional` makes a synthetic oneof that has no source of its own.
            if not any(f.proto3_optional and f.oneof_index == i for f in m.field):
                yield (*path, _MSG_ONEOF, i), f"oneof {name}.{o.name}"
        for i, nested in enumerate(m.nested_type):
            yield from message((*path, _MSG_NESTED, i), f"{name}.{nested.name}", nested)
        for i, e in enumerate(m.enum_type):
            yield from enum((*path, _MSG_ENUM, i), f"{name}.{e.name}", e)

    def enum(
        path: tuple[int, ...], name: str, e: descriptor_pb2.EnumDescriptorProto
    ) -> Iterator[_Element]:
        yield path, f"enum {name}"
        for i, v in enumerate(e.value):
            yield (*path, _ENUM_VALUE, i), f"enum value {name}.{v.name}"

    for i, m in enumerate(fd.message_type):
        yield from message((_FILE_MESSAGE, i), m.name, m)
    for i, e in enumerate(fd.enum_type):
        yield from enum((_FILE_ENUM, i), e.name, e)
    for i, s in enumerate(fd.service):
        yield (_FILE_SERVICE, i), f"service {s.name}"
        for j, rpc in enumerate(s.method):
            yield (_FILE_SERVICE, i, _SERVICE_METHOD, j), f"rpc {s.name}.{rpc.name}"


def rule_comments(fd: FileProto) -> list[str]:
    """Every service, rpc, message, field, oneof, enum and enum value has a leading comment."""
    assert fd.HasField("source_code_info"), "compile with --include_source_info"
    locations = {tuple(loc.path): loc for loc in fd.source_code_info.location}
    problems = []
    for path, what in _documented(fd):
        loc = locations.get(path)
        if loc is None:
            problems.append(f"{fd.name}: {what} has no source location")
        elif not loc.leading_comments.strip():
            problems.append(f"{fd.name}:{loc.span[0] + 1}: {what} has no leading comment")
    return problems


# --- the tests ------------------------------------------------------------------------------


def test_own_protos_found() -> None:
    """The lint sees the admin proto (it would pass vacuously on no files)."""
    assert Path("protos/canaryserve/admin/v1/admin.proto") in OWN_PROTOS


@pytest.mark.parametrize("proto", OWN_PROTOS, ids=str)
@pytest.mark.parametrize("rule", sorted(NAME_RULES))
def test_names(proto: Path, rule: str) -> None:
    """Each proto passes each naming rule: package, RPC messages, enums, case."""
    problems = NAME_RULES[rule](compiled(proto), "protos")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("proto", OWN_PROTOS, ids=str)
def test_every_element_has_a_leading_comment(proto: Path) -> None:
    problems = rule_comments(from_source(proto, REPO))
    assert not problems, f"{len(problems)} undocumented:\n" + "\n".join(problems)


def test_admin_package_is_canaryserve_admin_v1() -> None:
    from protos.canaryserve.admin.v1 import admin_pb2

    assert admin_pb2.DESCRIPTOR.package == "canaryserve.admin.v1"
    assert admin_pb2.DESCRIPTOR.name == "protos/canaryserve/admin/v1/admin.proto"


BAD_PROTO = """\
syntax = "proto3";

package bad.api;

// Documented.
service Admin {
  // Documented.
  rpc get_thing(GetThingRequest) returns (Thing) {}
  rpc Other(GetThingRequest) returns (OtherResponse) {}
}

// Documented.
enum Color {
  // Documented.
  RED = 0;
  COLOR_BLUE = 1;
}

message GetThingRequest {
  // Documented.
  string Name = 1;
  oneof Choice {
    // Documented.
    string a = 2;
  }
  map<string, string> labels = 4;
}

// Documented.
message Thing {}

// Documented.
message OtherResponse {}

// Documented.
message bad_name {}
"""


def test_rules_catch_violations(tmp_path: Path) -> None:
    """The rules are not vacuous: a proto breaking each of them is caught by each."""
    proto = Path("wrong/dir/bad.proto")
    (tmp_path / proto).parent.mkdir(parents=True)
    (tmp_path / proto).write_text(BAD_PROTO, encoding="utf-8")
    fd = from_source(proto, tmp_path)
    found = {rule: "\n".join(check(fd, "")) for rule, check in NAME_RULES.items()}
    assert "does not end in a version" in found["package"]
    assert "is in directory wrong/dir" in found["package"]
    assert "service Admin is not PascalCase ending in Service" in found["rpc_messages"]
    assert "rpc get_thing is not PascalCase" in found["rpc_messages"]
    assert "response is .bad.api.Thing, not .bad.api.get_thingResponse" in found["rpc_messages"]
    assert "GetThingRequest is also used by get_thing" in found["rpc_messages"]
    assert "Color.RED lacks the prefix COLOR_" in found["enums"]
    assert "zero value is ['RED'], not COLOR_UNSPECIFIED" in found["enums"]
    assert "message bad_name is not PascalCase" in found["case"]
    assert "field GetThingRequest.Name is not lower_snake_case" in found["case"]
    assert "oneof GetThingRequest.Choice is not lower_snake_case" in found["case"]
    comments = "\n".join(rule_comments(fd))
    for missing in (
        "rpc Admin.Other",
        "enum value Color.COLOR_BLUE",
        "message GetThingRequest has",
        "oneof GetThingRequest.Choice",
        "field GetThingRequest.labels",
    ):
        assert missing in comments, comments
    assert "bad.proto:19: message GetThingRequest has no leading comment" in comments
    for documented in ("service Admin ", "rpc Admin.get_thing", "enum Color ", "Color.RED"):
        assert documented not in comments
    assert "MapEntry" not in comments  # the synthetic map entry message needs no comment


@pytest.mark.parametrize(
    ("enum", "prefix"),
    [("Phase", "PHASE"), ("CohortTarget", "COHORT_TARGET"), ("HTTPCode", "HTTP_CODE")],
)
def test_upper_snake(enum: str, prefix: str) -> None:
    """A PascalCase enum name becomes the UPPER_SNAKE_CASE prefix buf expects."""
    assert upper_snake(enum) == prefix


# --- buf itself -----------------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason}; CI must have it (.ci/run runs .ci/install-clients.sh first)")
    pytest.skip(f"{reason} (run .ci/install-clients.sh)")


def test_buf_lint(tmp_path: Path) -> None:
    """`buf lint` (STANDARD + COMMENTS, protos/buf.yaml) passes on protos/."""
    if not BUF.exists() or shutil.which("node") is None:
        _unavailable("buf is not installed (client/node devDependency @bufbuild/buf: npm ci)")
    assert (PROTOS / "buf.yaml").is_file(), "protos/buf.yaml is missing"
    proc = subprocess.run(
        [str(BUF), "lint"],
        cwd=PROTOS,
        env={**os.environ, "BUF_CACHE_DIR": str(tmp_path / "buf-cache")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"buf lint:\n{proc.stdout}{proc.stderr}"
