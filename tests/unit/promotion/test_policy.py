"""The promotion policy as data: validated on construction, JSON round trips, frozen in a state."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from server.errors import InvalidInput
from server.promotion.documents import InvalidPromotionInput
from server.promotion.policy import Policy
from server.rollout.state import Phase, RolloutState


def test_policy_round_trip_and_frozen_state_mapping() -> None:
    policy = Policy(steps=(100, 5000), manual_steps=(1, 0), shadow_ppm=0, min_duration_s=1)
    assert Policy.from_dict(policy.as_dict()) == policy
    assert Policy.from_json(policy.to_json()) == policy
    assert policy.manual_steps == (0, 1) and policy.min_duration_s == 1.0
    state = RolloutState(
        model="m", stable="1", candidate="2", phase=Phase.SHADOW, policy=policy.as_dict()
    )
    assert isinstance(state.policy, MappingProxyType)
    assert Policy.from_dict(state.policy) == policy
    assert Policy.from_dict({}) == Policy()


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"step_weights": [1, 2]}, "unknown Policy key 'step_weights'"),
        ({"steps": []}, "steps"),
        ({"steps": [10, 10]}, "steps must increase"),
        ({"steps": [20, 10]}, "steps must increase"),
        ({"steps": [0, 10]}, r"steps\[0\]"),
        ({"steps": [10, 1_000_001]}, r"steps\[1\]"),
        ({"steps": [10.0]}, r"steps\[0\]"),
        ({"steps": [True]}, r"steps\[0\]"),
        ({"steps": "10,20"}, "steps must be a list"),
        ({"shadow_ppm": -1}, "shadow_ppm"),
        ({"min_requests": 0}, "min_requests"),
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.5}, "confidence"),
        ({"max_error_rate_increase": 2}, "max_error_rate_increase"),
        ({"interval_s": 0}, "interval_s"),
        ({"min_duration_s": float("inf")}, "min_duration_s"),
        ({"manual_steps": [5]}, r"manual_steps\[0\]"),
        ({"manual_steps": [1, 1]}, "duplicates"),
        ({"manual_steps": [-1], "shadow_ppm": 0}, r"manual_steps\[0\]"),
    ],
)
def test_policy_rejects(doc: dict[str, Any], match: str) -> None:
    """A malformed policy is refused as invalid input, naming the key."""
    with pytest.raises(InvalidPromotionInput, match=match) as caught:
        Policy.from_dict(doc)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, InvalidInput)
