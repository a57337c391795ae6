"""What /metrics reads of the registry and the schedulers at scrape time."""

from __future__ import annotations

from server.serving.registry import LoadState, Registry
from server.serving.schedulers import Schedulers
from server.serving.usage import cpu_seconds, isolated_restarts
from server.telemetry.metrics import SchedulingSample, VersionUsage

__all__ = ["exact_counts", "scheduling_samples", "usage"]


def exact_counts(registry: Registry) -> list[tuple[str, str, int, int]]:
    """(model, version, successes, failures) of every ready version, counted exactly."""
    return [
        (mv.model, mv.version, mv.stats.success_count, mv.stats.fail_count)
        for mv in registry.index()
        if mv.state is LoadState.READY
    ]


def usage(registry: Registry) -> list[VersionUsage]:
    """Memory at load, CPU seconds and isolated-process restarts of every ready version."""
    return [
        VersionUsage(
            mv.model,
            mv.version,
            mv.load_rss_bytes,
            cpu_seconds(mv.runner),
            isolated_restarts(mv.runner),
        )
        for mv in registry.index()
        if mv.state is LoadState.READY
    ]


def scheduling_samples(schedulers: Schedulers) -> list[SchedulingSample]:
    """Each version scheduler's queue, slots and counters, read under its lock."""
    samples = []
    for s in sorted(schedulers.all(), key=lambda s: (s.model, int(s.version))):
        with s.lock:
            st = s.stats
            samples.append(
                SchedulingSample(
                    s.model,
                    s.version,
                    s.queued(),
                    s.running(),
                    st.queue_count,
                    st.queue_ns / 1e9,
                    st.executions,
                    dict(st.batch_rows),
                    st.rejected,
                    st.timeouts,
                    st.shadow_shed,
                    st.fallbacks,
                    sum(st.batch_infer_ns.values()) / 1e9,
                )
            )
    return samples
