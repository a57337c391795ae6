"""The pre-promotion hook: 2xx lets a step proceed; anything else says why it holds."""

from __future__ import annotations

from collections.abc import Mapping

from client.webhooks import verify
from server.notify.hook import PrePromotionHook
from server.notify.signing import SIGNATURE_HEADER
from server.promotion.decision import Action, Decision, Evidence, VersionWindow
from server.testing import FakeClock


class Answer:
    def __init__(self, answer: int | OSError) -> None:
        self.answer = answer
        self.posts: list[tuple[bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.posts.append((body, dict(headers)))
        if isinstance(self.answer, OSError):
            raise self.answer
        return self.answer


def hook(answer: Answer) -> PrePromotionHook:
    return PrePromotionHook(
        "http://gate.example:9000/confirm?k=secret",
        secret="s",
        transport=answer,
        clock=FakeClock(2_000_000_000.0),
    )


def test_a_2xx_answer_lets_the_step_proceed_and_the_request_is_signed() -> None:
    answer = Answer(204)
    assert hook(answer).confirm("m", "promotion", "promote: all checks pass", {"x": 1}) is None
    ((body, headers),) = answer.posts
    event = verify("s", headers[SIGNATURE_HEADER], body, now=2_000_000_000.0)
    assert (event["type"], event["model"], event["details"]) == (
        "rollout.confirm_promotion",
        "m",
        {"x": 1},
    )


def test_any_other_answer_or_none_holds_and_says_why_without_the_path() -> None:
    assert hook(Answer(500)).confirm("m", "step", "", {}) == (
        "pre-promotion hook http://gate.example:9000 answered 500"
    )
    assert hook(Answer(302)).confirm("m", "step", "", {}) == (
        "pre-promotion hook http://gate.example:9000 answered 302"
    )
    assert hook(Answer(ConnectionRefusedError("connection refused"))).confirm(
        "m", "step", "", {}
    ) == ("pre-promotion hook http://gate.example:9000 unreachable: connection refused")


def test_a_decision_is_asked_about_as_a_step_or_a_promotion() -> None:
    window = VersionWindow(requests=100, errors=0)
    evidence = Evidence("m", "1", "2", 0, 30.0, window, window)
    advance = Decision(Action.ADVANCE, "advance: all pass", 1, 500_000, None, 0, (), evidence)
    answer = Answer(500)
    why = hook(answer).confirm_decision(advance)
    assert why == "pre-promotion hook http://gate.example:9000 answered 500"
    asked = verify("s", answer.posts[0][1][SIGNATURE_HEADER], answer.posts[0][0], now=2e9)
    assert asked["type"] == "rollout.confirm_step"
    assert asked["details"]["next_canary_weight_percent"] == 50.0
    assert asked["details"]["decision"]["reason"] == "advance: all pass"
    promote = Decision(Action.PROMOTE, "promote", None, None, None, 0, (), evidence)
    hook(answer).confirm_decision(promote)
    assert verify("s", answer.posts[1][1][SIGNATURE_HEADER], answer.posts[1][0], now=2e9)[
        "type"
    ] == ("rollout.confirm_promotion")
