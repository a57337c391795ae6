"""Python clients of canaryserve (numpy in, numpy out) and the `canaryserve` command line.

The client stands alone: it imports nothing from `server/`. What both sides must agree on is
in `protos/`: the wire protocol, and the constants of `protos/wire.py`.
"""

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient, InferResult
from client.outcomes import Outcome, OutcomesClient

__all__ = [
    "AdminClient",
    "ClientError",
    "InferResult",
    "InferenceClient",
    "Outcome",
    "OutcomesClient",
    "open_channel",
]
