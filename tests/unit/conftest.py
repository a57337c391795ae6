"""The unit guard: a unit test starts no server — it binds no socket, imports no server module.

While a test under tests/unit runs (setup, call and teardown), an audit hook refuses every
`socket.bind`, whoever's server it is. A unit test, or the import of a unit test module, that
brings in server.app (the composition root) or grpc's server module fails, naming itself
(IMPORTS_THE_EDGE lists the exceptions, and why). The fast loop
(`pytest -m "not e2e and not interop"`) collects nothing but tests/unit.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent
#: Imported only by code that starts a server.
SERVER_MODULES = ("server.app", "grpc._server")
#: Unit test modules that may import those (never bind): each with the change that would end it.
IMPORTS_THE_EDGE = {
    UNIT / "test_benchmark_report.py": (
        "benchmarks.serving, where split_cores lives, imports server.app at module level"
    ),
}

_running_unit_test = False


def _refuse_bind(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.bind" and _running_unit_test:
        raise RuntimeError(
            f"a unit test bound a socket to {args[1]!r}: tests that serve belong in tests/e2e"
        )


sys.addaudithook(_refuse_bind)


def _server_modules() -> set[str]:
    return {name for name in SERVER_MODULES if name in sys.modules}


def _tolerated(path: Path) -> bool:
    return path.resolve() in IMPORTS_THE_EDGE


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    before = _server_modules()
    report = yield
    imported = _server_modules() - before
    module = isinstance(collector, pytest.Module)
    if imported and report.passed and module and not _tolerated(collector.path):
        report.outcome = "failed"
        report.longrepr = (
            f"importing {collector.nodeid} imports {', '.join(sorted(imported))}: "
            "unit tests start no server (a test that needs one belongs in tests/e2e)"
        )
    return report


def _guarded(item: pytest.Item) -> Generator[None, object, object]:
    global _running_unit_test
    before = _server_modules()
    _running_unit_test = True
    try:
        result = yield
    finally:
        _running_unit_test = False
    imported = _server_modules() - before
    if imported and not _tolerated(item.path):
        names = ", ".join(sorted(imported))
        pytest.fail(f"{item.nodeid} imports {names}: unit tests start no server", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))
