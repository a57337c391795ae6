"""The inference servicer assembled from its mixins: every RPC of the service answered, none
left to the generated base class (which answers UNIMPLEMENTED), each in exactly one place,
and the request path on the servicer itself."""

from __future__ import annotations

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.api.inference import InferenceServicer
from server.api.inference_base import InferenceBase

RPCS = [m.name for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods]
PARTS = [c for c in InferenceServicer.__mro__ if issubclass(c, InferenceBase)]
ANSWERED = {
    "ServerLive", "ServerReady", "ServerMetadata", "ModelReady", "ModelMetadata", "ModelConfig",
    "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    "ModelInfer", "ModelStreamInfer",
}  # fmt: skip


def test_every_rpc_is_answered_by_a_part_not_the_generated_base() -> None:
    generated = vars(pb_grpc.GRPCInferenceServiceServicer)
    answered = {name for name in RPCS if getattr(InferenceServicer, name) is not generated[name]}
    assert set(RPCS) == ANSWERED  # the descriptor was read
    assert answered == ANSWERED


def test_each_rpc_lives_in_exactly_one_part() -> None:
    owners = {name: [p.__name__ for p in PARTS if name in vars(p)] for name in ANSWERED}
    assert {name: found for name, found in owners.items() if len(found) != 1} == {}


def test_the_request_path_is_defined_on_the_servicer_itself() -> None:
    assert {"ModelInfer", "ModelStreamInfer"} <= set(vars(InferenceServicer))


def test_parts_define_no_rpc_outside_the_service() -> None:
    """A misspelt method name would be dead code that gRPC never calls."""
    pascal = {n for p in PARTS for n in vars(p) if n[:1].isupper()}
    assert pascal - set(RPCS) == set()
