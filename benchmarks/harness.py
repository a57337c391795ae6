"""What every benchmark shares: the server under test, the load generator, pinning, the machine.

- `serving(root, settings)`: canaryserve (`App`) on a free port over `root/models`, in this
  process, stopped on exit.
- `LoadChild`: the parent's handle on `python -m benchmarks.load`, the one load generator, in a
  child process with its own GIL; `measure` adds this process's CPU time and the other
  processes' load over the run to the `Result`.
- `split_cores` / `pin_process`: the load generator on one core, the servers on the rest.
- `machine` / `describe`: the machine and library versions, read before any pinning.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import IO, Any, TypeVar

from benchmarks.load import Result, Spec
from server.app import App
from server.config import load_config

__all__ = [
    "REPO_ROOT", "Cores", "LoadChild", "abba", "add_set_option", "busy_seconds", "describe",
    "machine", "overrides", "pin_process", "serving", "split_cores", "start_server",
]  # fmt: skip

REPO_ROOT = Path(__file__).resolve().parents[1]
Cores = tuple[set[int], set[int]]  # (load generator CPUs, server CPUs)
T = TypeVar("T")


def start_server(root: Path, settings: Mapping[str, Any]) -> App:
    """canaryserve on a free port over `root/models` (state in `root/state`), /metrics off and
    intra_op_threads 1 unless `settings` (config keys) say otherwise; started."""
    defaults = {"models_dir": root / "models", "state_dir": root / "state", "port": 0,
                "metrics_port": -1, "intra_op_threads": 1}  # fmt: skip
    app = App(load_config(None, {**defaults, **settings}))
    app.start()
    return app


@contextlib.contextmanager
def serving(root: Path, settings: Mapping[str, Any]) -> Iterator[App]:
    """`start_server`, stopped (no grace) when the block ends."""
    app = start_server(root, settings)
    try:
        yield app
    finally:
        app.stop(0)


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE`, repeatable; `overrides(args.set)` reads them."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a canaryserve config override, VALUE in TOML syntax (e.g. {example})",
    )


def overrides(sets: Sequence[str]) -> dict[str, Any]:
    """The `--set` options as config overrides (one TOML document, so dotted keys merge)."""
    return tomllib.loads("\n".join(sets))


def split_cores(pin: bool) -> Cores | None:
    """(load generator CPUs, server CPUs): the first usable core, and the rest; None when
    not pinning (asked not to, fewer than two usable cores, or no sched_setaffinity)."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def pin_process(pid: int | str, cpus: set[int]) -> None:
    """Move every thread of process `pid` ("self": this one) onto `cpus`; threads it starts
    later inherit the set of the thread that starts them."""
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tasks = [0 if pid == "self" else int(pid)]
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(task, cpus)


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Cores (all, and usable by this process), CPU model, Python and library versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {name: metadata.version(name) for name in ("grpcio", "onnxruntime", "numpy")}
    return {"cores": os.cpu_count(), "usable_cores": usable, "cpu": _cpu_model(),
            "python": platform.python_version(), **versions}  # fmt: skip


def describe(m: Mapping[str, Any]) -> str:
    """`machine()` in one line."""
    return (
        f"{m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}; Python {m['python']}, "
        f"grpcio {m['grpcio']}, onnxruntime {m['onnxruntime']}, numpy {m['numpy']}"
    )


def abba(names: Sequence[T], repeats: int, offset: int = 0) -> Iterator[T]:
    """The names forwards, then backwards, and so on (AB BA), starting backwards on odd offsets."""
    for r in range(repeats):
        yield from (names if (r + offset) % 2 == 0 else names[::-1])


class LoadChild:
    """The load generator process: JSON commands in, JSON answers out (see `benchmarks.load`).

    With `cores`, its threads run on the first set (on both for kind "raw": the servers idle)."""

    def __init__(self, cores: Cores | None = None) -> None:
        self._cores = cores
        path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> LoadChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _ask(self, op: str, spec: Spec | None = None) -> dict[str, Any]:
        if spec is not None and self._cores is not None:
            # Every thread the child has now: its client threads are started per spec by
            # its main thread, so they inherit.
            client, servers = self._cores
            pin_process(self._proc.pid, client | servers if spec.kind == "raw" else client)
        stdin, stdout = self._pipes()
        command = {"op": op} if spec is None else {"op": op, "spec": asdict(spec)}
        stdin.write(f"{json.dumps(command)}\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited (code {self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def measure(self, spec: Spec) -> Result:
        """One run to its end, with this process's CPU time (kind "grpc": the servers') and
        the cores other processes kept busy over it."""
        busy, wall, cpu = busy_seconds(), time.monotonic(), time.process_time()
        result = Result(**self._ask("run", spec))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        if spec.kind == "grpc":
            result.server_cpu_s = cpu
        after = busy_seconds()
        if busy is not None and after is not None and wall > 0:
            others = (after - busy) - cpu - result.client_cpu_s
            result.other_load = round(max(others, 0.0) / wall, 2)
        return result

    def start(self, spec: Spec) -> None:
        """Start a run (duration 0: until `stop`); returns once every thread sends."""
        answer = self._ask("start", spec)
        if not answer.get("started"):
            raise RuntimeError(f"load generator did not start: {answer.get('first_error')}")

    def count(self) -> int:
        """Calls the started run has made so far."""
        return int(self._ask("count")["calls"])

    def stop(self) -> Result:
        """End the started run and return what it measured."""
        return Result(**self._ask("stop"))

    def close(self) -> None:
        stdin, stdout = self._pipes()
        stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        stdout.close()
