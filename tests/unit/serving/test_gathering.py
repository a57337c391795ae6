"""Company: when a batch's leader waits, learned from arrivals and run costs (pure, no clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.serving.gathering import MIN_RUN_CPU_S, Company


def test_a_fresh_version_never_waits() -> None:
    assert not Company().worth_waiting(announced=5)  # no run measured yet


def test_a_microsecond_model_never_waits_even_under_overlap() -> None:
    company = Company()
    for i in range(50):
        company.ran_alone(8e-6)
        company.arrive(i * 1e-4, busy=True, inside=16)
    assert company.overlap > 0.9
    assert not company.worth_waiting(announced=3)


def test_a_costly_model_waits_when_requests_overlap_or_are_announced() -> None:
    company = Company()
    company.ran_alone(300e-6)
    for i in range(20):  # one client: each request arrives at an idle version
        company.arrive(i * 1e-3, busy=False, inside=1)
    assert not company.worth_waiting(announced=0)
    assert company.worth_waiting(announced=1)  # someone is being decoded right now
    for i in range(20):
        company.arrive(1.0 + i * 1e-4, busy=True, inside=4)
    assert company.worth_waiting(announced=0)
    assert company.target(16) == 4  # waits for the four lately seen at once
    assert company.target(2) == 2  # never more than a batch
    assert abs(company.step_s() - 2e-4) < 1e-5  # two gaps between busy arrivals


def test_a_descheduled_run_counts_as_at_most_twice_the_mean() -> None:
    company = Company()
    company.ran_alone(10e-6)
    company.ran_alone(5e-3)  # the thread lost the core in the middle of its run
    assert company.run_cpu_s < 2 * 10e-6 + 1e-12
    assert not company.worth_waiting(announced=1)


@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=200))
def test_the_peak_follows_the_largest_recent_crowd_and_fades_slowly(crowds: list[int]) -> None:
    company = Company()
    for i, inside in enumerate(crowds):
        before = company.peak
        company.arrive(float(i), busy=True, inside=inside)
        assert company.peak >= inside
        assert company.peak >= before - 0.05 - 1e-9
    assert 1 <= company.target(16) <= 16


@given(st.floats(min_value=0, max_value=1e-2), st.floats(min_value=0, max_value=1e-2))
def test_the_step_is_never_shorter_than_the_threshold(first: float, second: float) -> None:
    company = Company()
    company.arrive(first, busy=True, inside=2)
    company.arrive(first + second, busy=True, inside=2)
    assert company.step_s() >= MIN_RUN_CPU_S
