"""The admin servicer assembled from its mixins: every RPC of the service answered by exactly
one group, none left to the generated base class (which answers UNIMPLEMENTED)."""

from __future__ import annotations

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from protos.canaryserve.admin.v1 import admin_pb2_grpc as pb_grpc
from server.api.admin import AdminServicer
from server.api.admin_base import AdminBase

RPCS = [m.name for m in pb.DESCRIPTOR.services_by_name["AdminService"].methods]
GROUPS = [c for c in AdminServicer.__mro__ if issubclass(c, AdminBase) and c is not AdminBase]


def test_every_rpc_is_implemented_by_a_group_not_the_generated_base() -> None:
    generated = vars(pb_grpc.AdminServiceServicer)
    unimplemented = [name for name in RPCS if getattr(AdminServicer, name) is generated[name]]
    assert len(RPCS) > 20  # the descriptor was read
    assert unimplemented == []


def test_each_rpc_lives_in_exactly_one_group() -> None:
    owners = {name: [g.__name__ for g in GROUPS if name in vars(g)] for name in RPCS}
    assert {name: found for name, found in owners.items() if len(found) != 1} == {}


def test_groups_define_no_rpc_outside_the_service() -> None:
    """A misspelt method name would be dead code that gRPC never calls."""
    pascal = {n for g in GROUPS for n in vars(g) if n[:1].isupper()}
    assert pascal - set(RPCS) == set()
