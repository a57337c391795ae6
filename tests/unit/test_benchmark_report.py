"""The serving benchmark's report logic: best runs, paired ratios, the verdict lines."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks.load import Result
from benchmarks.report import Point, render


def _runs(*rps: float) -> list[Result]:
    return [Result(requests=int(r), rps=r, total_calls=int(r)) for r in rps]


def test_paired_ratios_divide_runs_of_the_same_repeat() -> None:
    point = Point.of(
        "classifier",
        4,
        Result(rps=50_000.0),
        {"baseline": _runs(1000, 800, 1200), "canaryserve": _runs(990, 760, 1080)},
    )
    assert point.vs_baseline == 1080 / 1200  # best against best
    assert [round(r, 3) for r in point.paired] == [0.99, 0.95, 0.9]
    assert round(point.paired_median, 3) == 0.95


def test_the_report_states_both_verdicts() -> None:
    point = Point.of(
        "mlp",
        16,
        Result(rps=20_000.0),
        {"baseline": _runs(1000, 1000), "canaryserve": _runs(900, 1000)},
    )
    machine = {"cores": 2, "usable_cores": 2, "cpu": "x86_64", "python": "3.11",
               "grpcio": "1", "onnxruntime": "1", "numpy": "2"}  # fmt: skip
    server = {"intra_op_threads": 1, "workers": 16, "max_message_bytes": 64 * 2**20}
    args = SimpleNamespace(warmup=0.5, duration=3.0, repeats=2)
    text = render([point], machine, server, args)
    assert "(best runs): met at every point" in text
    assert "median of paired runs: met at every point" in text  # median of 0.9 and 1.0 = 0.95
    worse = Point.of("mlp", 16, Result(rps=1.0), {"baseline": _runs(1000, 1000),
                                                  "canaryserve": _runs(900, 900)})  # fmt: skip
    text = render([worse], machine, server, args)
    assert "(best runs): NOT met at mlp c=16 (0.900)" in text
    assert "median of paired runs: NOT met at mlp c=16 (0.900)" in text


def test_pinning_splits_the_usable_cores() -> None:
    """The load generator gets one core, the servers the rest; no pinning when asked not to."""
    import os

    from benchmarks.harness import split_cores

    assert split_cores(False) is None
    cores = split_cores(True)
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(usable) < 2:
        assert cores is None
        return
    assert cores is not None
    client, servers = cores
    assert len(client) == 1 and servers and not client & servers
    assert client | servers == usable
