"""What the process and each version cost: the standard process, platform and GC collectors,
and per-version memory and CPU families read at scrape time.

The process figures are prometheus_client's own (`process_*` from /proc on Linux, `python_gc_*`,
`python_info`), registered in the server's registry rather than the global one, so several
servers in one process each expose their own complete set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["UsageCollector", "VersionUsage", "register_process_collectors"]


@dataclass(frozen=True)
class VersionUsage:
    """One loaded version's resource figures at one moment; None where they are not known."""

    model: str
    version: str
    #: Growth of the process's resident memory while the version was loaded and warmed up
    #: (an isolated version: its own process's resident memory then).
    load_rss_bytes: int | None = None
    #: Estimated CPU time of the threads running the version's session (sampled).
    cpu_seconds: float | None = None
    #: Restarts of an isolated version's process (None: the version runs in the server's).
    isolated_restarts: int | None = None


class UsageCollector(Collector):
    """Per-version memory and CPU, and the process's OS threads (which prometheus_client's
    process collector leaves out)."""

    def __init__(self, usage: Callable[[], Iterable[VersionUsage]]) -> None:
        self._usage = usage

    def collect(self) -> Iterator[Metric]:
        labels = ("model", "version")
        rss = GaugeMetricFamily(
            "canaryserve_version_load_rss_bytes",
            "Growth of the process's resident memory while this version's onnxruntime session"
            " was created and warmed up (an estimate: other work at that moment counts too,"
            " memory reused from earlier frees does not, and the first version loaded also"
            " carries onnxruntime's one-time set-up; onnxruntime reports no per-session"
            " memory on CPU). For a version loaded in a process of its own (isolation), that"
            " process's resident memory after the warm-up.",
            labels=labels,
        )
        cpu = CounterMetricFamily(
            "canaryserve_version_cpu_seconds",
            "CPU time of the threads running this version's session, estimated from one run"
            " in 16 (all of a run's CPU with intra_op_threads = 1, the default; the calling"
            " thread's share otherwise).",
            labels=labels,
        )
        restarts = CounterMetricFamily(
            "canaryserve_isolated_restarts",
            "Times the process of this isolated version died and was started again.",
            labels=labels,
        )
        for u in self._usage():
            if u.load_rss_bytes is not None:
                rss.add_metric([u.model, u.version], u.load_rss_bytes)
            if u.cpu_seconds is not None:
                cpu.add_metric([u.model, u.version], u.cpu_seconds)
            if u.isolated_restarts is not None:
                restarts.add_metric([u.model, u.version], u.isolated_restarts)
        yield rss
        yield cpu
        if restarts.samples:  # only with isolated versions loaded
            yield restarts
        threads = _os_threads()
        if threads is not None:
            family = GaugeMetricFamily(
                "canaryserve_process_threads",
                "OS threads of the process: gRPC, onnxruntime and Python threads together.",
            )
            family.add_metric([], threads)
            yield family


def _os_threads() -> int | None:
    """The process's OS thread count from /proc (Linux), else None."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def register_process_collectors(registry: CollectorRegistry) -> None:
    """prometheus_client's process (CPU seconds, resident and virtual memory, open and maximum
    file descriptors, start time; Linux only), platform and garbage-collector collectors."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
