"""Restart backoff of an isolated version's process, on a fake clock of plain numbers."""

from __future__ import annotations

import pytest

from server.serving.backoff import RestartBackoff


def test_a_crash_loop_waits_longer_each_time_up_to_the_cap() -> None:
    backoff = RestartBackoff(first=0.1, longest=1.0, forgive_after=30.0)
    now, delays = 0.0, []
    for _ in range(6):
        delays.append(backoff.delay(started=now, died=now + 0.5))  # dies half a second in
        now += 0.5 + delays[-1]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.restarts == 6


def test_a_process_that_served_long_enough_restarts_at_once_again() -> None:
    backoff = RestartBackoff(first=0.1, longest=10.0, forgive_after=30.0)
    for _ in range(4):
        backoff.delay(started=0.0, died=1.0)
    assert backoff.delay(started=100.0, died=129.9) == 1.6  # still in the loop
    assert backoff.delay(started=200.0, died=230.0) == 0.1  # lived 30 s: forgiven
    assert backoff.delay(started=231.0, died=231.5) == 0.2


def test_the_delays_must_make_sense() -> None:
    with pytest.raises(ValueError):
        RestartBackoff(first=0.0)
    with pytest.raises(ValueError):
        RestartBackoff(first=2.0, longest=1.0)
