"""One HTTP POST with the standard library: the seam between delivery and the network.

Redirects are not followed (a webhook that moved answers 3xx, which is a failure to fix in
the configuration, not something to retry), and proxies come from the environment as
urllib reads them.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["Transport", "display_url", "post"]


class Transport(Protocol):
    """POST `body` to `url`; returns the HTTP status, raises OSError when there is none
    (refused, unreachable, timed out)."""

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> int: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from exc
    except (http.client.HTTPException, ValueError) as exc:
        # A reply that is not HTTP (BadStatusLine, a broken chunk, a bad header): as failed as
        # a connection error, so it is retried and counted, never raised into the sender.
        raise OSError(f"not an HTTP answer: {type(exc).__name__}: {exc}") from exc


def display_url(url: str) -> str:
    """How a receiver is named in logs, explanations and answers: scheme, host and port only
    (Slack-style webhook URLs carry their secret in the path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"
