"""A model's settings as its parts' policies: its `[models.<name>]` key, else the server's."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from hypothesis import given
from hypothesis import strategies as st

from server.assembly import policies
from server.config import Config, ModelConfig, WarmupConfig
from server.notify.settings import HookConfig, NotificationConfig
from server.promotion.policy import Policy
from server.serving.limits import Limits

MODELS_DIR = Path("models-not-read")


def config_with(model: ModelConfig | None = None, **server_wide: object) -> Config:
    models = {"m": model} if model is not None else {}
    return Config(models_dir=MODELS_DIR, models=MappingProxyType(models), **server_wide)  # type: ignore[arg-type]


def test_a_model_without_a_table_gets_the_server_wide_scheduling() -> None:
    config = config_with(
        instances=2,
        max_queue_size=9,
        queue_timeout_seconds=1.5,
        candidate_instances=3,
        candidate_max_queue_size=5,
        candidate_queue_timeout_seconds=0.25,
        max_batch_size=32,
        max_queue_delay_microseconds=500,
        candidate_overload="fail",
    )
    policy = policies.scheduling_policy(config, "other")
    assert policy.stable == Limits(instances=2, max_queue_size=9, queue_timeout_s=1.5)
    assert policy.candidate == Limits(instances=3, max_queue_size=5, queue_timeout_s=0.25)
    assert policy.max_batch_size == 32
    assert policy.max_queue_delay_s == 0.0005
    assert policy.candidate_fallback is False


@given(
    model_instances=st.none() | st.integers(1, 64),
    server_instances=st.integers(1, 64),
    model_delay=st.none() | st.integers(0, 10_000),
    server_delay=st.integers(0, 10_000),
    model_overload=st.none() | st.sampled_from(["fallback", "fail"]),
    server_overload=st.sampled_from(["fallback", "fail"]),
)
def test_a_models_own_key_wins_and_an_unset_one_falls_back(
    model_instances: int | None,
    server_instances: int,
    model_delay: int | None,
    server_delay: int,
    model_overload: str | None,
    server_overload: str,
) -> None:
    model = ModelConfig(
        candidate_instances=model_instances,
        max_queue_delay_microseconds=model_delay,
        candidate_overload=model_overload,
    )
    config = config_with(
        model,
        candidate_instances=server_instances,
        max_queue_delay_microseconds=server_delay,
        candidate_overload=server_overload,
    )
    policy = policies.scheduling_policy(config, "m")
    assert policy.candidate.instances == (model_instances or server_instances)
    delay = server_delay if model_delay is None else model_delay
    assert policy.max_queue_delay_s == delay / 1e6
    assert policy.candidate_fallback == ((model_overload or server_overload) == "fallback")


def test_a_candidate_runs_with_stables_threads_unless_told_otherwise() -> None:
    assert policies.placement(config_with(intra_op_threads=2), "m").candidate_intra_op_threads == 2
    config = config_with(ModelConfig(candidate_intra_op_threads=1), intra_op_threads=2)
    placement = policies.placement(config, "m")
    assert (placement.intra_op_threads, placement.candidate_intra_op_threads) == (2, 1)


def test_placement_takes_the_models_containment_keys_over_the_server_wide_ones() -> None:
    model = ModelConfig(isolation="process", memory_budget_mb=512, candidate_arena_shrinkage=False)
    placement = policies.placement(config_with(model, candidate_isolation="process"), "m")
    assert placement.isolation == "process"
    assert placement.candidate_isolation == "process"
    assert placement.memory_budget_mb == 512
    assert placement.candidate_arena_shrinkage is False
    assert policies.placement(config_with(model), "other").isolation == "none"


def test_shadow_comparison_promotion_and_warmup_come_from_the_models_table() -> None:
    policy, warmup = Policy(), WarmupConfig(inputs="random", count=2)
    model = ModelConfig(
        shadow_atol=0.1, shadow_rtol=0.2, shadow_outputs=("y",), shadow_top_k=5,
        promotion=policy, warmup=warmup,
    )  # fmt: skip
    config = config_with(model)
    comparison = policies.comparison_policy(config, "m")
    assert (comparison.atol, comparison.rtol, comparison.outputs, comparison.top_k) == (
        0.1,
        0.2,
        ("y",),
        5,
    )
    assert policies.promotion_policy(config, "m") is policy
    assert policies.warmup(config, "m") is warmup
    assert policies.promotion_policy(config, "other") is None
    assert policies.warmup(config, "other") is None
    assert policies.comparison_policy(config, "other").top_k == ModelConfig().shadow_top_k


def test_the_pre_promotion_hook_exists_only_when_configured() -> None:
    assert policies.pre_promotion_hook(config_with()) is None
    hooked = config_with(
        notifications=NotificationConfig(
            pre_promotion_hook=HookConfig("http://127.0.0.1:9/hook", timeout_seconds=1.0)
        )
    )
    assert policies.pre_promotion_hook(hooked) is not None
