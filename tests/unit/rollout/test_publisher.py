"""TablePublisher: routing tables built from states and ready sets, numbered, published."""

from __future__ import annotations

from server.rollout.publisher import TablePublisher
from server.rollout.router import RoutingTable
from server.rollout.state import RolloutState, initial_state

STATES = {"m": initial_state("m", "1", 1.0)}


class Rig:
    def __init__(self) -> None:
        self.ready: dict[str, frozenset[str]] = {"m": frozenset({"1"}), "n": frozenset({"1"})}
        self.reads: list[str] = []
        self.published: list[RoutingTable] = []

    def ready_versions(self, model: str) -> frozenset[str]:
        self.reads.append(model)
        return self.ready.get(model, frozenset())

    def publisher(self, states: dict[str, RolloutState]) -> TablePublisher:
        return TablePublisher(self.ready_versions, self.published.append, False, states)


def test_the_first_table_is_built_unpublished_and_knows_no_ready_versions() -> None:
    rig = Rig()
    tables = rig.publisher(STATES)
    assert rig.published == [] and rig.reads == []
    assert tables.table.revision == 1
    assert tables.table.models["m"].stable == "1"
    assert tables.table.models["m"].ready == frozenset()
    assert tables.table.allow_pinning is False


def test_refresh_publishes_only_when_a_ready_set_changed_unless_forced() -> None:
    rig = Rig()
    tables = rig.publisher(STATES)
    assert tables.refresh(STATES, force=False)  # nothing was known: {"1"} is a change
    assert not tables.refresh(STATES, force=False)
    assert tables.refresh(STATES, force=True)
    rig.ready["m"] = frozenset({"1", "2"})
    assert tables.refresh(STATES, force=False)
    assert [t.revision for t in rig.published] == [2, 3, 4]
    assert rig.published[-1].models["m"].ready == frozenset({"1", "2"})
    assert tables.table is rig.published[-1]


def test_a_commit_reads_the_ready_set_of_a_new_model_only() -> None:
    rig = Rig()
    tables = rig.publisher(STATES)
    tables.refresh(STATES, force=True)
    rig.reads.clear()
    rig.ready["m"] = frozenset({"1", "2"})  # not re-read by a commit: refresh_ready's job
    both = {**STATES, "n": initial_state("n", "1", 2.0)}
    tables.committed(both, "n")
    assert rig.reads == ["n"]
    table = rig.published[-1]
    assert set(table.models) == {"m", "n"}
    assert table.models["m"].ready == frozenset({"1"})
    assert table.models["n"].ready == frozenset({"1"})
    tables.committed(both, "m")
    assert rig.reads == ["n"]
    assert [t.revision for t in rig.published] == [2, 3, 4]
