"""The unit guard itself: binding a socket inside a unit test fails the test."""

from __future__ import annotations

import socket

import pytest


def test_binding_a_socket_in_a_unit_test_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match="belong in tests/e2e"):
        sock.bind(("127.0.0.1", 0))
