"""Who may call what: configured tokens, or an admin token generated on first start."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from server.assembly.access import access
from server.config import Config
from server.errors import Unauthenticated


def bearer(token: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {token}")]


def test_without_admin_tokens_one_is_generated_into_the_state_dir(tmp_path: Path) -> None:
    callers = access(Config(models_dir=tmp_path, state_dir=tmp_path))
    token = (tmp_path / "admin.token").read_text().strip()
    assert callers.admin.identify(bearer(token)) == "generated"
    assert not callers.inference.enabled
    assert not callers.outcome.enabled  # inference open: outcome reports open too


def test_outcome_reports_take_the_inference_token_unless_they_have_their_own(
    tmp_path: Path,
) -> None:
    admin = MappingProxyType({"ops": "a"})
    guarded = Config(
        models_dir=tmp_path, state_dir=tmp_path, admin_tokens=admin, inference_token="inf"
    )
    callers = access(guarded)
    assert not (tmp_path / "admin.token").exists()
    assert callers.admin.identify(bearer("a")) == "ops"
    assert callers.inference.identify(bearer("inf")) == "inference"
    assert callers.outcome.identify(bearer("inf")) == "inference"
    own = Config(
        models_dir=tmp_path,
        state_dir=tmp_path,
        admin_tokens=admin,
        inference_token="inf",
        outcome_tokens=MappingProxyType({"shop": "o"}),
    )
    outcome = access(own).outcome
    assert outcome.identify(bearer("o")) == "shop"
    with pytest.raises(Unauthenticated):
        outcome.identify(bearer("inf"))
