"""Signing (server side) and verification (client.webhooks, the receiver's side) agree."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import webhooks
from client.webhooks import InvalidSignature, verify
from server.notify.signing import SIGNATURE_HEADER, sign, signature_header

BODY = b'{"type":"rollout.promoted"}'


def test_the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() -> None:
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, BODY) == expected
    assert signature_header("s3cret", 1700000000, BODY) == f"t=1700000000,v1={expected}"


def test_server_and_client_name_the_same_header() -> None:
    assert SIGNATURE_HEADER == webhooks.SIGNATURE_HEADER == "X-Canaryserve-Signature"


@given(secret=st.text(min_size=1), text=st.text(), t=st.integers(0, 2**40))
def test_every_signed_body_verifies_and_any_other_body_does_not(
    secret: str, text: str, t: int
) -> None:
    body = json.dumps({"x": text}).encode()
    header = signature_header(secret, t, body)
    assert verify(secret, header, body, now=t) == {"x": text}
    with pytest.raises(InvalidSignature):
        verify(secret, header, body + b" ", now=t)
    with pytest.raises(InvalidSignature):
        verify(secret + "x", header, body, now=t)


def test_a_wrong_secret_an_old_timestamp_or_a_broken_header_is_refused() -> None:
    header = signature_header("right", 1000, BODY)
    assert verify("right", header, BODY, now=1000.0) == {"type": "rollout.promoted"}
    with pytest.raises(InvalidSignature, match="does not match"):
        verify("wrong", header, BODY, now=1000.0)
    with pytest.raises(InvalidSignature, match="from now"):
        verify("right", header, BODY, now=1000.0 + 301)
    assert verify("right", header, BODY, now=1000.0 + 600, tolerance_s=900)
    with pytest.raises(InvalidSignature, match="no timestamp"):
        verify("right", "v1=abc", BODY, now=1000.0)


def test_any_of_several_v1_signatures_may_match_for_secret_rotation() -> None:
    old = sign("old", 1000, BODY)
    new = sign("new", 1000, BODY)
    assert verify("new", f"t=1000,v1={old},v1={new}", BODY, now=1000.0)
