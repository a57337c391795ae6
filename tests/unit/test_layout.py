"""The package graph: imports flow one way and the core packages are transport-free."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What each part of server/ may import from the rest of server/ (docs: server/__init__.py).
# The ticker (a periodic background thread) is a leaf: every part with a periodic loop uses
# it, and it imports nothing from server/. `coercion` checks one configuration value's type
# for config and notify alike. `freshness` picks the live replicas' latest publications for
# fleet telemetry and fleet outcomes alike.
LEAVES = {"errors", "clock", "intervals", "ticker", "coercion", "freshness"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    "intervals": set(),
    "ticker": set(),
    "coercion": set(),
    "freshness": set(),
    # The SQLite store's watch polls the file on a ticker.
    "rollout": {"errors", "clock", "ticker"},
    "shadow": {"clock", "intervals"},
    "telemetry": LEAVES | {"rollout", "shadow"},
    # Outcomes join reports to versions through the router (routing keys, stages).
    "outcomes": LEAVES | {"rollout"},
    # Promotion reads the outcome windows and their statistics for its outcome gates.
    "promotion": LEAVES | {"outcomes", "rollout", "shadow", "telemetry"},
    # The data plane records who served each request into the outcomes' join table.
    "serving": LEAVES | {"outcomes", "rollout", "shadow", "telemetry"},
    "api": LEAVES
    | {"config", "notify", "outcomes", "rollout", "shadow", "promotion", "serving", "telemetry"},
    # The etcd client speaks gRPC, so it sits beside the edge, not in the transport-free core.
    # Fleet telemetry publishes the windows and shadow counters and serves them as promotion
    # evidence: it reads telemetry and shadow and implements promotion's EvidenceSource. The
    # fleet repository loads and unloads versions in serving's registry. Fleet outcomes
    # publish the outcome windows and merge every replica's for the gates and `ab` (outcomes).
    "fleet": LEAVES | {"outcomes", "rollout", "telemetry", "shadow", "promotion", "serving"},
    # Webhooks, the pre-promotion hook and stable alerts: they read rollout states and audit
    # rows (rollout) and the hook reads promotion decisions (promotion); promotion and
    # telemetry reach notify only through callables the composition root wires.
    "notify": LEAVES | {"promotion", "rollout"},
    "config": LEAVES | {"notify", "promotion"},
    "testing": LEAVES | {"rollout", "serving"},
    # The parts the composition root builds from the configuration (the store, per-model
    # policies, authenticators, the gRPC server): the root's own imports, minus the root.
    "assembly": LEAVES
    | {
        "api",
        "config",
        "fleet",
        "notify",
        "outcomes",
        "promotion",
        "rollout",
        "serving",
        "shadow",
        "telemetry",
    },
    "app": LEAVES
    | {
        "assembly",
        "api",
        "config",
        "fleet",
        "notify",
        "outcomes",
        "promotion",
        "rollout",
        "serving",
        "shadow",
        "telemetry",
    },
    "__main__": {"app", "config", "telemetry"},
}
#: Packages that must not touch the transport or generated code.
TRANSPORT_FREE = {
    "ticker",
    "freshness",
    "outcomes",
    "rollout",
    "shadow",
    "promotion",
    "telemetry",
    "notify",
    "errors",
    "clock",
    "intervals",
    "coercion",
}


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def part_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "server").with_suffix("")
    return rel.parts[0]


SERVER_FILES = sorted((ROOT / "server").rglob("*.py"))


@pytest.mark.parametrize("path", SERVER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_server_imports_follow_the_package_graph(path: Path) -> None:
    part = part_of(path)
    if part == "__init__":
        return
    assert part in ALLOWED, f"{part} is not in the package graph; add it to server/__init__.py"
    for module in imports(path):
        if module.startswith("server.") or module == "server":
            target = module.split(".")[1] if "." in module else "__init__"
            if target not in (part, "__init__"):
                assert target in ALLOWED[part], f"{path.name}: {part} may not import {module}"
        if part in TRANSPORT_FREE:
            top = module.split(".")[0]
            assert top not in {"grpc", "protos", "grpc_health", "grpc_reflection"}, (
                f"{path.name}: {part} must stay transport-free, imports {module}"
            )


def test_the_package_graph_has_no_cycles() -> None:
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        if seen.get(node) == 2:
            return
        assert seen.get(node) != 1, f"import cycle: {' -> '.join([*stack, node])}"
        seen[node] = 1
        for nxt in sorted(ALLOWED.get(node, set())):
            visit(nxt, [*stack, node])
        seen[node] = 2

    for part in sorted(ALLOWED):
        visit(part, [])


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_modules_import_each_other_one_way() -> None:
    graph = {module_name(p): set(imports(p)) for p in SERVER_FILES}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"import cycle: {' -> '.join([*stack, node])}"
        state[node] = 1
        for target in sorted(graph[node]):
            if target in graph and target != node:
                visit(target, [*stack, node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])


TESTS = ROOT / "tests"
#: Where test modules live: unit mirrors server/ by package; e2e and interop are marked by place.
TEST_DIRS = ("unit", "e2e", "interop")


def test_every_test_module_lives_in_unit_e2e_or_interop() -> None:
    """A test module elsewhere would carry no marker and run in the fast loop, server or not."""
    stray = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("test_*.py"))
        if path.relative_to(TESTS).parts[0] not in TEST_DIRS
    ]
    assert stray == [], f"move {stray} under tests/unit, tests/e2e or tests/interop"


def test_unit_packages_mirror_server_packages() -> None:
    """tests/unit/<package>/ exists only for a package of server/ (and every package has one),
    and tests/unit/client/ for the client."""
    server_packages = {p.parent.name for p in (ROOT / "server").glob("*/__init__.py")}
    unit_packages = {p.parent.name for p in (TESTS / "unit").glob("*/__init__.py")}
    assert unit_packages == server_packages | {"client"}, "tests/unit/<package> mirrors server/"
