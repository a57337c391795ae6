"""The settings of one model (`[models.<name>]`) and of its warm-up (`[models.<name>.warmup]`)."""

from __future__ import annotations

from dataclasses import dataclass

from server.promotion.policy import Policy

__all__ = ["WARMUP_INPUTS", "ModelConfig", "WarmupConfig"]


#: What a configured warm-up sample is made of (server.serving.warmup.INPUTS).
WARMUP_INPUTS = ("zeros", "random", "file")


@dataclass(frozen=True)
class WarmupConfig:
    """How each version of a model is warmed before it serves (`[models.<name>.warmup]`, like
    Triton's model_warmup). A configured sample that fails makes the version UNAVAILABLE."""

    inputs: str = "zeros"
    """The sample: "zeros" (empty strings for BYTES), "random" (floats standard normal,
    integers 0..9, booleans; BYTES fall back to empty strings, as in Triton) or "file"."""
    file: str | None = None
    """With inputs = "file": an .npz archive, relative to the model directory, holding one
    array per model input, named after it (bytes or str arrays for BYTES)."""
    batch_size: int = 1
    """Rows of the sample: a variable first dimension gets this size (a file's arrays are
    repeated this many times along it); the model's inputs must have one when above 1."""
    count: int = 1
    """How many times the sample runs."""


@dataclass(frozen=True)
class ModelConfig:
    """Settings of one model, from a `[models.<name>]` table."""

    stable: str | None = None
    """Version that is stable when the server first sees the model (default: the highest)."""
    shadow_atol: float = 1e-5
    """Shadow comparison: absolute tolerance before an output counts as different."""
    shadow_rtol: float = 1e-3
    """Shadow comparison: tolerance relative to the stable answer."""
    shadow_outputs: tuple[str, ...] = ()
    """Shadow comparison: outputs whose differences count as disagreement (empty: all)."""
    shadow_top_k: int = 3
    """Shadow comparison: k of the top-k overlap reported for class-score outputs."""
    promotion: Policy | None = None
    """Promotion policy of automatic rollouts (`[models.<name>.promotion]`, docs/promotion.md)."""
    warmup: WarmupConfig | None = None
    """Warm-up sample of every version (`[models.<name>.warmup]`). Without it, zeros: a model
    that refuses them is served unwarmed, with a warning in the log."""
    # Scheduling (docs/scheduling.md): None takes the server-wide key of the same name.
    instances: int | None = None
    max_queue_size: int | None = None
    queue_timeout_seconds: float | None = None
    max_batch_size: int | None = None
    max_queue_delay_microseconds: int | None = None
    candidate_instances: int | None = None
    candidate_max_queue_size: int | None = None
    candidate_queue_timeout_seconds: float | None = None
    candidate_overload: str | None = None
    # Containment (docs/scheduling.md): None takes the server-wide key of the same name.
    isolation: str | None = None
    candidate_isolation: str | None = None
    memory_budget_mb: int | None = None
    candidate_intra_op_threads: int | None = None
    candidate_arena_shrinkage: bool | None = None
    candidate_priority: str | None = None
