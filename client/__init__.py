"""Python client (numpy in, numpy out) and the `canaryserve` command line."""

from client.errors import ClientError
from client.inference import InferenceClient, InferResult

__all__ = ["ClientError", "InferResult", "InferenceClient"]
