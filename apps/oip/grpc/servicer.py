"""`inference.GRPCInferenceService`: each RPC reads its message, asks apps/oip/services.py
and writes the answer. The health calls and the server's metadata need no credentials (as
/v2/health/* and /healthz); the model calls and the repository index need the `predict` scope,
as on /v2, and ModelInfer counts against the caller's `predict` rate. The RPCs not
written here (streaming, model control, shared memory, statistics…) answer UNIMPLEMENTED,
from the stub's base class."""

from typing import Any

from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from apps.accounts.models import ApiKey
from apps.oip import services
from apps.oip.grpc import tensors
from apps.oip.grpc.calls import Call, rpc

PREDICT = ApiKey.Scope.PREDICT


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    @rpc()
    def ServerLive(self, request: pb.ServerLiveRequest, call: Call) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @rpc()
    def ServerReady(self, request: pb.ServerReadyRequest, call: Call) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=services.server_ready())

    @rpc()
    def ServerMetadata(self, request: pb.ServerMetadataRequest, call: Call) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**services.server_metadata())

    @rpc(scope=PREDICT)
    def ModelReady(self, request: pb.ModelReadyRequest, call: Call) -> pb.ModelReadyResponse:
        ready = services.model_ready(**_target(call, request.name, request.version))
        return pb.ModelReadyResponse(ready=ready)

    @rpc(scope=PREDICT)
    def ModelMetadata(self, request: pb.ModelMetadataRequest, call: Call) -> pb.ModelMetadataResponse:
        return tensors.model_metadata(services.model_metadata(**_target(call, request.name, request.version)))

    @rpc(scope=PREDICT, throttle=True)
    def ModelInfer(self, request: pb.ModelInferRequest, call: Call) -> pb.ModelInferResponse:
        response = services.model_infer(
            caller=call.caller(),
            name=request.model_name,
            version=request.model_version,
            # Read once the version is known, so that a request that cannot be read leaves
            # its failed audit row, as on every door.
            request=lambda: tensors.infer_request(request),
        )
        return tensors.infer_response(response)

    @rpc(scope=PREDICT)
    def RepositoryIndex(self, request: pb.RepositoryIndexRequest, call: Call) -> pb.RepositoryIndexResponse:
        index = services.repository_index(
            user=call.authenticated_user, api_key=call.api_key, ready_only=request.ready
        )
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**m) for m in index])


def _target(call: Call, name: str, version: str) -> dict[str, Any]:
    return {"user": call.user, "api_key": call.api_key, "name": name, "version": version}
