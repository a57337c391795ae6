"""The test tree's wiring: markers by directory, and the real-server fixtures e2e and interop share.

tests/unit      pure logic: no server, no sleeps     (the fast loop: -m "not e2e and not interop")
tests/e2e       a real server on port 0, real clients              (marked e2e)
tests/interop   third-party clients and tools against the server   (marked interop)

A run whose -m expression leaves out a directory's marker does not even collect it, so the fast
loop never imports the gRPC edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.support.servers import make_repository, start_app

if TYPE_CHECKING:
    from client.inference import InferenceClient
    from protos.inference import grpc_service_pb2_grpc as pb_grpc
    from server.app import App

__all__ = ["make_repository", "start_app"]  # e2e modules import these from here too

# Hypothesis times each example (200 ms) and its data generation: on a loaded machine that
# measures the machine, failing a property that holds (DeadlineExceeded, then Flaky). The
# properties keep their examples and assertions; only the stopwatch goes.
settings.register_profile(
    "canaryserve", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("canaryserve")

TESTS = Path(__file__).resolve().parent
#: Directory -> the marker every test in it carries.
MARKERS = {TESTS / "e2e": "e2e", TESTS / "interop": "interop"}


def _marker_of(path: Path) -> str | None:
    path = path.resolve()
    for directory, marker in MARKERS.items():
        if path == directory or directory in path.parents:
            return marker
    return None


def _selects(markexpr: str, marker: str) -> bool:
    """Whether `-m markexpr` keeps a test that carries only `marker`."""
    try:
        from _pytest.mark.expression import Expression

        return bool(Expression.compile(markexpr).evaluate(lambda name, **_: name == marker))
    except Exception:  # an expression pytest will reject itself, or another pytest: collect
        return True


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    marker = MARKERS.get(collection_path.resolve())
    markexpr = config.getoption("markexpr", "")
    if marker is not None and markexpr and not _selects(markexpr, marker):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = _marker_of(item.path)
        if marker is not None:
            item.add_marker(marker)


# -- one real server per test module (tests that mutate the repository make their own) --------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """A server over the bundled classifier 1 and 2, counter and shouter; stable is v2."""
    server = start_app(tmp_path_factory.mktemp("server"))
    yield server
    server.stop(0)


@pytest.fixture(scope="module")
def target(app: App) -> str:
    return f"127.0.0.1:{app.port}"


@pytest.fixture(scope="module")
def client(target: str) -> Iterator[InferenceClient]:
    from client.inference import InferenceClient

    with InferenceClient(target) as c:
        yield c


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    import grpc

    from protos.inference import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
