"""The admin watch stream: every rollout change in commit order, optionally after the
rollouts as they are now."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_base import AdminBase
from server.api.admin_convert import audit_pb
from server.api.status import translate_stream_errors
from server.serving.names import check_optional_model_name

__all__ = ["RolloutWatch"]

#: How often a quiet stream checks that its caller is still there.
_WATCH_POLL_S = 0.5


class RolloutWatch(AdminBase):
    """WatchRollouts: one subscription to the rollout controller per stream."""

    @translate_stream_errors
    def WatchRollouts(
        self, request: pb.WatchRolloutsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchRolloutsResponse]:
        self._actor(context)
        if check_optional_model_name(request.model):
            self._controller.get(request.model)  # NOT_FOUND rather than a silent stream
        current, sub = self._controller.watch(request.model or None)
        try:
            if request.send_current:
                for state in current:
                    yield pb.WatchRolloutsResponse(sequence=0, rollout=self._rollout(state))
            while context.is_active():
                # Falling behind raises: the client must read the state again.
                event = sub.get(timeout=_WATCH_POLL_S)
                if event is None:
                    if sub.closed:
                        return
                    continue
                yield pb.WatchRolloutsResponse(
                    sequence=event.sequence,
                    rollout=self._rollout(event.result.after),
                    audit=audit_pb(event.audit),
                )
        finally:
            self._controller.unsubscribe(sub)
