"""The AdminService servicer: thin — authenticate, convert, delegate to the rollout controller
(and, for loading and unloading model versions, to the model repository).

One class, as gRPC registers one servicer per service, assembled from one mixin per group of
RPCs; their shared dependencies and helpers are in `admin_base`:

    admin_rollouts       start, weight, shadow, promote, rollback, pause, resume, undo,
                         approve, kill switch
    admin_views          get, list, route, audit, explain, shadow report
    admin_repository     load, unload
    admin_drills         start and end a drill
    admin_notifications  send a test notification
    admin_watch          the watch stream
"""

from __future__ import annotations

from server.api.admin_drills import DrillCommands
from server.api.admin_notifications import NotificationTest
from server.api.admin_repository import RepositoryControl
from server.api.admin_rollouts import RolloutCommands
from server.api.admin_views import RolloutViews
from server.api.admin_watch import RolloutWatch

__all__ = ["AdminServicer"]


class AdminServicer(
    RolloutCommands,
    RolloutViews,
    RepositoryControl,
    DrillCommands,
    NotificationTest,
    RolloutWatch,
):
    """Rollout operations for authenticated operators."""
