"""The rollout side of the models the registry serves: each gets a rollout state (new ones with
the configured stable version, or the highest ready one; saved state wins over the config), and
a version whose file a forced load replaced is written to the audit log."""

from __future__ import annotations

from server.config import Config, ConfigError
from server.errors import ModelNotFound
from server.rollout.controller import RolloutController
from server.serving.registry import Registry, VersionChange

__all__ = ["adopt", "audit_replaced", "check_configured_stable"]


def check_configured_stable(
    config: Config, registry: Registry, rollouts: RolloutController
) -> None:
    """A configured stable version must exist and be ready the first time it is used."""
    for name, settings in config.models.items():
        if settings.stable is None or name not in registry.models():
            continue
        try:
            rollouts.get(name)
            continue  # saved state wins over the config
        except ModelNotFound:
            pass
        ready = registry.ready_versions(name)
        if settings.stable not in ready:
            listed = ", ".join(sorted(ready, key=int)) or "none"
            raise ConfigError(
                f'[models.{name}] stable = "{settings.stable}" is not a ready version '
                f"(ready: {listed})"
            )


def adopt(
    config: Config, registry: Registry, rollouts: RolloutController, model: str | None = None
) -> None:
    """Give every model (or `model`) with ready versions a rollout state (new ones: stable =
    the configured version, else the highest ready)."""
    defaults: dict[str, str] = {}
    for name in [model] if model else registry.models():
        configured = config.models.get(name)
        stable = (configured.stable if configured else None) or registry.highest_ready(name)
        if stable is not None:
            defaults[name] = stable
    rollouts.adopt(defaults)
    rollouts.refresh_ready()


def audit_replaced(rollouts: RolloutController, change: VersionChange) -> None:
    """A forced load replaced a version's file under the same number: say so."""
    rollouts.append_audit(
        change.model,
        "version_replaced",
        "repository",
        f"forced load: {change.describe()}",
        {
            "version": change.version,
            "old_sha256": change.old_sha256,
            "new_sha256": change.new_sha256,
        },
    )
