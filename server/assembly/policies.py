"""A model's settings as the policies its parts run by: each `[models.<name>]` key, else the
server-wide key of the same name (docs/config.md, docs/scheduling.md)."""

from __future__ import annotations

from server.config import Config, ModelConfig, WarmupConfig
from server.config.keys import PLACEMENT_KEYS
from server.notify.hook import PrePromotionHook
from server.promotion.policy import Policy
from server.serving.limits import Limits
from server.serving.limits import Policy as SchedulingPolicy
from server.serving.roles import Placement
from server.shadow.comparison import ComparisonPolicy

__all__ = [
    "comparison_policy",
    "placement",
    "pre_promotion_hook",
    "promotion_policy",
    "scheduling_policy",
    "warmup",
]


def _settings(config: Config, model: str) -> ModelConfig:
    return config.models.get(model) or ModelConfig()


def placement(config: Config, model: str) -> Placement:
    """Where and with how many threads the model's versions run, as stable and as candidate."""
    settings = _settings(config, model)
    chosen = {
        k: getattr(config, k) if getattr(settings, k) is None else getattr(settings, k)
        for k in PLACEMENT_KEYS
    }
    if chosen["candidate_intra_op_threads"] is None:  # the same as stable's by default
        chosen["candidate_intra_op_threads"] = config.intra_op_threads
    return Placement(intra_op_threads=config.intra_op_threads, **chosen)


def scheduling_policy(config: Config, model: str) -> SchedulingPolicy:
    """The model's scheduling: its `[models.<name>]` keys, else the server-wide ones."""
    settings = _settings(config, model)

    def pick(key: str) -> object:
        value = getattr(settings, key)
        return getattr(config, key) if value is None else value

    def limits(prefix: str) -> Limits:
        return Limits(
            instances=int(pick(f"{prefix}instances")),  # type: ignore[call-overload]
            max_queue_size=int(pick(f"{prefix}max_queue_size")),  # type: ignore[call-overload]
            queue_timeout_s=float(pick(f"{prefix}queue_timeout_seconds")),  # type: ignore[arg-type]
        )

    return SchedulingPolicy(
        stable=limits(""),
        candidate=limits("candidate_"),
        max_batch_size=int(pick("max_batch_size")),  # type: ignore[call-overload]
        max_queue_delay_s=int(pick("max_queue_delay_microseconds")) / 1e6,  # type: ignore[call-overload]
        candidate_fallback=pick("candidate_overload") == "fallback",
    )


def comparison_policy(config: Config, model: str) -> ComparisonPolicy:
    """How the model's shadow outputs are compared with stable's."""
    settings = _settings(config, model)
    return ComparisonPolicy(
        atol=settings.shadow_atol,
        rtol=settings.shadow_rtol,
        outputs=settings.shadow_outputs,
        top_k=settings.shadow_top_k,
    )


def promotion_policy(config: Config, model: str) -> Policy | None:
    """The model's configured promotion policy, or None (the admin call's or the default)."""
    return _settings(config, model).promotion


def warmup(config: Config, model: str) -> WarmupConfig | None:
    """The model's configured warm-up sample, or None (zeros, best effort)."""
    return _settings(config, model).warmup


def pre_promotion_hook(config: Config) -> PrePromotionHook | None:
    """The configured pre-promotion hook, asked before automatic steps and promotions."""
    hook = config.notifications.pre_promotion_hook
    if hook is None:
        return None
    return PrePromotionHook(hook.url, secret=hook.secret, timeout_s=hook.timeout_seconds)
