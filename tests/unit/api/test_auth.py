"""Bearer tokens without a server: which token a call presents, and the generated token file."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from protos.wire import ADMIN_TOKEN_FILE as TOKEN_FILE
from server.api.auth import Authenticator, ensure_token_file
from server.errors import Unauthenticated

ADMIN = Authenticator({"alice": "tok-a", "bob": "tok-b"}, "admin")


@pytest.mark.parametrize(
    ("header", "name"),
    [("Bearer tok-a", "alice"), ("bearer tok-b", "bob"), ("BEARER   tok-a  ", "alice")],
)
def test_a_valid_bearer_token_names_its_holder(header: str, name: str) -> None:
    assert ADMIN.identify([("x-other", "1"), ("authorization", header)]) == name


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        (None, "admin calls need metadata 'authorization: Bearer <token>'"),
        ([("authorization", "tok-a")], "need metadata 'authorization: Bearer <token>'"),
        ([("authorization", b"Bearer tok-a")], "need metadata"),  # binary metadata: no
        ([("authorization", "Bearer ")], "the admin token is empty"),
        ([("authorization", "Bearer tok-c")], "the admin token is not valid"),
        ([("authorization", "Bearer tok-a2")], "the admin token is not valid"),
    ],
)
def test_anything_else_is_unauthenticated_saying_what_is_wrong(
    metadata: list[tuple[str, str | bytes]] | None, why: str
) -> None:
    with pytest.raises(Unauthenticated, match=re.escape(why)):
        ADMIN.identify(metadata)


def test_an_audience_without_tokens_is_disabled_and_empty_tokens_are_refused() -> None:
    assert not Authenticator({}, "inference").enabled and ADMIN.enabled
    with pytest.raises(ValueError, match="inference tokens must not be empty"):
        Authenticator({"a": "  "}, "inference")


def test_the_generated_token_file_is_private_and_reused(tmp_path: Path) -> None:
    token = ensure_token_file(tmp_path / "state")
    path = tmp_path / "state" / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32 and path.read_text() == token + "\n"
    assert ensure_token_file(tmp_path / "state") == token
    assert not list((tmp_path / "state").glob("*.tmp"))  # written aside, then renamed


def test_an_empty_token_file_is_replaced_with_a_new_token(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).write_text("\n")  # a crash between creating and writing it
    (tmp_path / TOKEN_FILE).chmod(0o600)  # the server creates it private
    token = ensure_token_file(tmp_path)
    assert token and (tmp_path / TOKEN_FILE).read_text().strip() == token
