"""Triton's model repository extension: RepositoryIndex, and RepositoryModelLoad/Unload.

Repository control (RepositoryModelLoad/Unload) changes what every caller is served, so it is
the operator's: it needs the admin token (Triton keeps it behind explicit model control and
its restricted protocols), checked here rather than by the inference-token interceptor, and
goes through `ModelRepository`, which audits it and refuses to unload what routing uses.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from protos.inference import grpc_service_pb2 as pb
from server.api.inference_base import InferenceBase
from server.api.status import translate_errors
from server.errors import InvalidInput, Unauthenticated, shorten
from server.serving.names import check_model_name
from server.serving.registry import LoadState

__all__ = ["REPOSITORY_CONTROL", "RepositoryExtension"]

_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
#: The methods that need the admin token (full names, as interceptors see them).
REPOSITORY_CONTROL = frozenset(
    f"/{_SERVICE}/{rpc}" for rpc in ("RepositoryModelLoad", "RepositoryModelUnload")
)


class RepositoryExtension(InferenceBase):
    """The repository index, and whole-model loads and unloads with the admin token."""

    def _operator(self, context: grpc.ServicerContext, rpc: str) -> str:
        """The name of the admin token the call presents (for the audit log)."""
        try:
            return self._admin_auth.identify(context.invocation_metadata())
        except Unauthenticated as exc:
            raise Unauthenticated(
                f"{rpc} changes what every caller is served, so it needs the admin token: {exc}"
            ) from None

    @translate_errors
    def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=mv.model, version=mv.version, state=mv.state.value, reason=mv.reason)
                for mv in self._registry.index()
                if not request.ready or mv.state is LoadState.READY
            ]
        )

    @translate_errors
    def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        actor = self._operator(context, "RepositoryModelLoad")
        model = check_model_name(request.model_name, "model_name")
        _supported(request.parameters, "RepositoryModelLoad", {"force": "bool_param"})
        force = "force" in request.parameters and request.parameters["force"].bool_param
        self._repository.load(
            model, None, actor=actor, reason="", rpc="RepositoryModelLoad", force=force
        )
        return pb.RepositoryModelLoadResponse()

    @translate_errors
    def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        actor = self._operator(context, "RepositoryModelUnload")
        model = check_model_name(request.model_name, "model_name")
        # tritonclient's unload_model always sends unload_dependents; no model here has
        # dependents (there are no ensembles), so either value unloads just this model.
        _supported(request.parameters, "RepositoryModelUnload", {"unload_dependents": "bool_param"})
        self._repository.unload(model, None, actor=actor, reason="", rpc="RepositoryModelUnload")
        return pb.RepositoryModelUnloadResponse()


def _supported(
    parameters: Mapping[str, pb.ModelRepositoryParameter], rpc: str, accepted: Mapping[str, str]
) -> None:
    """InvalidInput naming the first parameter `rpc` does not support (none is ignored)."""
    for key, value in parameters.items():
        kind = value.WhichOneof("parameter_choice")
        if accepted.get(key) == kind:
            continue
        if key in accepted:
            why = f"it must be a {accepted[key]}, not {kind or 'empty'}"
        elif key == "config":
            why = (
                "canaryserve takes no model configuration: a version is "
                "<models_dir>/<model>/<version>/model.onnx and its settings come from the server "
                "config"
            )
        elif key.startswith("file:"):
            why = "files cannot be sent: put them under <models_dir>/<model>/<version>/, then load"
        else:
            why = f"{rpc} takes {', '.join(sorted(accepted)) or 'no parameters'}"
        raise InvalidInput(f"{rpc} parameter '{shorten(key)}' is not supported: {why}")
