"""Benchmarks (not tests): canaryserve against a minimal gRPC server and raw `session.run`.

`python -m benchmarks.serving` (or `make bench`) runs the whole comparison and prints a table;
see docs/benchmarks.md. `benchmarks.baseline` is the minimal server, `benchmarks.load` the
closed-loop load generator that runs in a child process.
"""

from __future__ import annotations

__all__: list[str] = []
