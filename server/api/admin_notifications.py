"""The admin RPC that sends a test event to every configured webhook and says what each
receiver answered."""

from __future__ import annotations

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_base import AdminBase
from server.api.status import translate_errors

__all__ = ["NotificationTest"]


class NotificationTest(AdminBase):
    """SendTestNotification: no deliveries when no webhook is configured."""

    @translate_errors
    def SendTestNotification(
        self, request: pb.SendTestNotificationRequest, context: grpc.ServicerContext
    ) -> pb.SendTestNotificationResponse:
        actor = self._actor(context)
        results = self._notifier.send_test(actor, request.reason) if self._notifier else []
        return pb.SendTestNotificationResponse(
            deliveries=[
                pb.NotificationDelivery(
                    receiver=r.receiver,
                    delivered=r.attempt.delivered,
                    http_status=r.attempt.status or 0,
                    error=r.attempt.error,
                    seconds=r.attempt.seconds,
                )
                for r in results
            ]
        )
