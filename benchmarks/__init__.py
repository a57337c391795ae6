"""Benchmarks (not tests): serving, rollout and shadow cost, release safety; see docs/benchmarks.md.

`benchmarks.serving` (`make bench`), `benchmarks.perf_analyzer` (`make perf-analyzer`),
`benchmarks.rollout_shadow` and `benchmarks.release_safety` are the benchmarks. They share one
harness: `benchmarks.harness` starts the server under test, the load generator child process
(`benchmarks.load`, its calls in `benchmarks.calls`), pins cores and describes the machine.
`benchmarks.baseline` is the minimal server and `benchmarks.report` the serving report.
"""

from __future__ import annotations

__all__: list[str] = []
