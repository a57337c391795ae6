"""The benchmarks' shared load generator and harness, against a real server, in short runs."""

from __future__ import annotations

import time

from benchmarks.harness import LoadChild, abba, describe, machine
from benchmarks.load import Run, Spec


def _spec(target: str, **more: object) -> Spec:
    settings: dict[str, object] = {"kind": "grpc", "model": "classifier", "shape": [1, 4]}
    settings.update(concurrency=2, duration=0.3, warmup=0.1, target=target)
    settings.update(more)
    return Spec(**settings)  # type: ignore[arg-type]


def test_a_closed_loop_counts_the_calls_of_its_window(target: str) -> None:
    result = Run(_spec(target)).finish(now=False)
    assert result.errors == 0, result.first_error
    assert 0 < result.requests <= result.total_calls
    assert result.seconds == 0.3 and result.rps == result.requests / 0.3
    assert 0 < result.p50_ms <= result.p99_ms == result.service_p99_ms
    assert result.versions == {} and result.lag_p99_ms == 0.0


def test_an_open_loop_paces_calls_and_tallies_them_by_version(target: str) -> None:
    spec = _spec(target, rate=200.0, duration=0.5, inputs=8, keys="random", request_ids=True,
                 by_version=True, pin_version="1", pin_share=0.5)  # fmt: skip
    result = Run(spec).finish(now=False)
    assert result.errors == 0, result.first_error
    assert 80 <= result.requests <= 101  # 200/s over 0.5 s, due times inside the window
    assert sum(result.versions.values()) == result.requests
    assert "1" in result.versions and len(result.versions) == 2  # pinned, and the stable
    assert set(result.version_p99_ms) == set(result.versions)


def test_errors_are_tallied_by_status_code(target: str) -> None:
    result = Run(_spec(target, model="no-such-model")).finish(now=False)
    assert result.requests == 0 and result.errors == result.total_calls > 0
    code = result.first_error.split(":")[0]
    assert result.status == {code: result.errors} and code == "NOT_FOUND"


def test_the_child_process_runs_until_stopped_and_measures(target: str) -> None:
    with LoadChild() as child:
        child.start(_spec(target, duration=0.0, warmup=0.0, rate=100.0, by_version=True))
        time.sleep(0.3)
        assert child.count() > 0
        stopped = child.stop()
        assert stopped.errors == 0 and stopped.requests > 0 and stopped.seconds >= 0.3
        measured = child.measure(_spec(target, duration=0.2))
        assert measured.requests > 0 and measured.server_cpu_s > 0 and measured.server_us > 0


def test_abba_alternates_and_the_machine_is_described() -> None:
    assert list(abba("ab", 3)) == ["a", "b", "b", "a", "a", "b"]
    assert list(abba(["a", "b"], 2, offset=1)) == ["b", "a", "a", "b"]
    assert "cores" in describe(machine())
