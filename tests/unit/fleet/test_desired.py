"""The fleet's desired versions: a call changes them by what it named, a replica follows
what was named (not everything it has that another replica lacks), failed loads back off."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.fleet.desired import Desired, LoadRetries, Plan, plan
from server.serving.repository import RepositoryChange
from server.testing import FakeClock

versions = st.frozensets(st.sampled_from([str(i) for i in range(1, 8)]))
#: What calls send: a load of some versions, or an unload of some (None: the whole model).
changes = versions.map(lambda v: RepositoryChange("m", loaded=v)) | (st.none() | versions).map(
    lambda v: RepositoryChange("m", unloaded=v)
)
#: What the fleet can hold: never a version both loaded and unloaded.
desireds = st.builds(Desired, versions, versions, st.booleans()).map(
    lambda d: Desired(d.loaded, d.unloaded - d.loaded, d.others_unloaded)
)


def test_a_load_adds_only_what_it_loaded() -> None:
    load = RepositoryChange("m", loaded=frozenset({"3"}))
    assert Desired(frozenset({"1", "2"})).after(load) == Desired(frozenset({"1", "2", "3"}))


def test_an_unload_names_the_version_and_a_later_load_takes_it_back() -> None:
    unloaded = Desired().after(RepositoryChange("m", unloaded=frozenset({"2"})))
    assert unloaded == Desired(unloaded=frozenset({"2"}))
    again = unloaded.after(RepositoryChange("m", loaded=frozenset({"2"})))
    assert again == Desired(loaded=frozenset({"2"}))


def test_a_whole_model_unload_forgets_every_load_and_unloads_the_rest() -> None:
    whole = Desired(frozenset({"1"}), frozenset({"2"})).after(RepositoryChange("m", unloaded=None))
    assert whole == Desired(others_unloaded=True)
    back = whole.after(RepositoryChange("m", loaded=frozenset({"3"})))
    assert back == Desired(frozenset({"3"}), others_unloaded=True)


@given(st.lists(changes, max_size=6))
def test_the_latest_call_about_a_version_decides_and_json_keeps_it(
    calls: list[RepositoryChange],
) -> None:
    desired = Desired()
    for change in calls:
        desired = Desired.from_json(desired.after(change).to_json())
        assert change.loaded <= desired.loaded
        assert not (change.unloaded or frozenset()) & desired.loaded
        assert not desired.loaded & desired.unloaded


@given(versions, versions, versions, versions)
def test_two_disjoint_changes_in_either_order_give_the_same_set(
    loaded: frozenset[str], unloaded: frozenset[str], a: frozenset[str], b: frozenset[str]
) -> None:
    """What compare-and-set needs: a change retried on top of another keeps both."""
    b = b - a
    start = Desired(loaded - unloaded, unloaded)
    load, unload = RepositoryChange("m", loaded=a), RepositoryChange("m", unloaded=b)
    assert start.after(load).after(unload) == start.after(unload).after(load)


def test_a_set_written_before_unloads_were_kept_reads_as_loads_only() -> None:
    assert Desired.from_json({"versions": ["1", "2"]}) == Desired(frozenset({"1", "2"}))


def test_a_version_polled_here_survives_a_load_of_another_version() -> None:
    desired = Desired(frozenset({"1", "2", "3"}))
    assert plan(desired, {"1", "2", "4"}) == Plan(load=("3",), unload=())


def test_a_version_unloaded_through_the_api_is_unloaded() -> None:
    desired = Desired(frozenset({"1", "2"}), frozenset({"3"}))
    assert plan(desired, {"1", "2", "3", "4"}) == Plan(load=(), unload=("3",))


def test_a_whole_model_unload_is_one_whole_model_unload_here() -> None:
    whole = Desired(others_unloaded=True)
    assert plan(whole, {"1", "2", "10"}) == Plan((), ("1", "2", "10"), whole=True)
    assert plan(whole, set()) == Plan((), ())  # nothing left to unload
    back = Desired(frozenset({"3"}), others_unloaded=True)
    assert plan(back, {"1", "3"}) == Plan((), ("1",))  # one version: refused while in use


@given(desireds, versions)
def test_a_plan_loads_every_missing_desired_version_and_unloads_only_ready_ones(
    desired: Desired, ready: frozenset[str]
) -> None:
    todo = plan(desired, ready)
    assert set(todo.load) == desired.loaded - ready
    assert set(todo.unload) <= ready - desired.loaded
    assert list(todo.unload) == sorted(todo.unload, key=int)


def test_failed_loads_back_off_doubling_up_to_the_longest_wait() -> None:
    clock = FakeClock(now=0.0)
    retries = LoadRetries(clock, first=1.0, longest=4.0)
    assert retries.due("m", "3")
    waits = [retries.failed("m", "3") for _ in range(5)]
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert not retries.due("m", "3")
    clock.advance(3.9)
    assert not retries.due("m", "3")
    clock.advance(0.1)
    assert retries.due("m", "3")
    assert retries.due("m", "4")  # per version


def test_a_load_or_a_new_desired_set_forgets_the_failures() -> None:
    clock = FakeClock(now=0.0)
    retries = LoadRetries(clock)
    retries.failed("m", "3")
    retries.failed("other", "3")
    retries.forget("m")
    assert retries.due("m", "3") and retries.failures("m", "3") == 0
    assert not retries.due("other", "3")
    retries.loaded("other", "3")
    assert retries.due("other", "3")
