"""The Open Inference Protocol over REST, under /v2: health, server and model metadata,
readiness, inference (JSON and binary tensors, compression) and the repository index.

Errors answer as the protocol says, `{"error": "<message>"}` with the HTTP status, after
the same authentication, scopes, visibility rules and throttling as /api/v1.
"""

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.authentication import client_address
from apps.accounts.models import ApiKey
from apps.accounts.permissions import ApiKeyScope, request_api_key
from apps.core.exception_handler import api_exception_handler
from apps.core.exceptions import PayloadTooLarge
from apps.core.http import content_length
from apps.core.middleware import log_context
from apps.inference.models import Prediction
from apps.inference.services import Caller
from apps.inference.sessions import loaded_model, sessions
from apps.oip import rest, services
from apps.oip.protocol import InferRequest

TAG = "Open Inference Protocol (v2)"
_ERROR = inline_serializer("OipError", {"error": serializers.CharField()})
_ERRORS = {status: OpenApiResponse(_ERROR) for status in (400, 401, 403, 404, 409, 413, 422, 429)}
_TENSORS = inline_serializer(
    "OipTensorMetadata",
    {
        "name": serializers.CharField(),
        "datatype": serializers.CharField(),
        "shape": serializers.ListField(child=serializers.IntegerField()),
    },
    many=True,
)


def oip_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The platform's error, in the protocol's shape: {"error": message}, same status and headers."""
    response = api_exception_handler(exc, context)
    error = response.data.get("error", {}) if isinstance(response.data, dict) else {}
    response.data = {"error": error.get("message", "Error.") if isinstance(error, dict) else str(error)}
    return response


class OipView(APIView):
    required_scope = ApiKey.Scope.PREDICT
    parser_classes: list = []  # bodies are read raw: JSON header plus binary tensors

    def get_exception_handler(self) -> Any:
        return oip_exception_handler


class PublicOipView(OipView):
    authentication_classes: list = []
    permission_classes = [AllowAny]


class ServerLiveApi(PublicOipView):
    @extend_schema(tags=[TAG], operation_id="v2_health_live", responses={200: None})
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(status=200)


class ServerReadyApi(PublicOipView):
    @extend_schema(tags=[TAG], operation_id="v2_health_ready", responses={200: None, 503: None})
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(status=200 if services.server_ready() else 503)


class ServerMetadataApi(PublicOipView):
    @extend_schema(
        tags=[TAG],
        operation_id="v2_server_metadata",
        responses={
            200: inline_serializer(
                "OipServerMetadata",
                {
                    "name": serializers.CharField(),
                    "version": serializers.CharField(),
                    "extensions": serializers.ListField(child=serializers.CharField()),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        return Response(services.server_metadata())


class ModelMetadataApi(OipView):
    @extend_schema(
        tags=[TAG],
        operation_id="v2_model_metadata",
        responses={
            200: inline_serializer(
                "OipModelMetadata",
                {
                    "name": serializers.CharField(),
                    "versions": serializers.ListField(child=serializers.CharField()),
                    "platform": serializers.CharField(),
                    "inputs": _TENSORS,
                    "outputs": _TENSORS,
                },
            ),
            **_ERRORS,
        },
    )
    def get(self, request: AuthenticatedRequest, name: str, version: str = "") -> Response:
        return Response(
            services.model_metadata(
                user=request.user, api_key=request_api_key(request), name=name, version=version
            )
        )


class ModelReadyApi(OipView):
    @extend_schema(tags=[TAG], operation_id="v2_model_ready", responses={200: None, 400: None, **_ERRORS})
    def get(self, request: AuthenticatedRequest, name: str, version: str = "") -> HttpResponse:
        ready = services.model_ready(
            user=request.user, api_key=request_api_key(request), name=name, version=version
        )
        return HttpResponse(status=200 if ready else 400)


class ModelInferApi(OipView):
    throttle_scope = "predict"

    @extend_schema(
        tags=[TAG],
        operation_id="v2_model_infer",
        request={"application/json": OpenApiTypes.OBJECT, "application/octet-stream": OpenApiTypes.BINARY},
        responses={(200, "application/json"): OpenApiTypes.OBJECT, **_ERRORS},
        description=(
            "An inference request of the Open Inference Protocol: a JSON header, optionally "
            "followed by binary tensors (`Inference-Header-Content-Length`, "
            "`parameters.binary_data_size`); `Content-Encoding` and `Accept-Encoding` gzip or "
            "deflate. A single BYTES input to an image model carries encoded images."
        ),
    )
    def post(self, request: AuthenticatedRequest, name: str, version: str = "") -> HttpResponse:
        caller = Caller(
            user=request.user,
            api_key=request_api_key(request),
            request_id=getattr(request._request, "request_id", ""),
            client_address=client_address(request),
            source=Prediction.Source.V2_REST,
            routing_key=request.headers.get("X-Routing-Key", ""),
        )
        parsed: list[InferRequest] = []

        def read() -> InferRequest:  # read once the version is known: a bad body is recorded
            parsed.append(self._read(request))
            return parsed[0]

        result = services.model_infer(caller=caller, name=name, version=version, request=read)
        log_context(request).update(model=result.model_name, version=result.model_version)
        binary_default = parsed[0].parameters.get("binary_data_output", False) is True
        body, header_length = rest.write_response(result, binary_default=binary_default)
        body, encoding = rest.compress(body, request.headers.get("Accept-Encoding", ""))
        response = HttpResponse(
            body, content_type="application/octet-stream" if header_length else "application/json"
        )
        if header_length is not None:
            response[rest.HEADER_LENGTH] = str(header_length)
        if encoding:
            response["Content-Encoding"] = encoding
        return response

    @staticmethod
    def _read(request: Request) -> InferRequest:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if content_length(request) > limit:
            raise PayloadTooLarge(
                f"The request body is {content_length(request)} bytes; at most {limit}.",
                details={"limit_bytes": limit},
            )
        body = rest.decompress(request.body, request.headers.get("Content-Encoding", ""), limit=limit)
        return rest.read_request(body, request.headers.get(rest.HEADER_LENGTH))


class RepositoryIndexApi(OipView):
    @extend_schema(
        tags=[TAG],
        operation_id="v2_repository_index",
        request=inline_serializer("OipRepositoryIndexRequest", {"ready": serializers.BooleanField()}),
        responses={
            200: inline_serializer(
                "OipRepositoryEntry",
                {
                    "name": serializers.CharField(),
                    "version": serializers.CharField(),
                    "state": serializers.CharField(),
                    "reason": serializers.CharField(required=False),
                },
                many=True,
            ),
            **_ERRORS,
        },
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        ready = rest.read_json_object(request.body).get("ready", False) is True
        return Response(
            services.repository_index(user=request.user, api_key=request_api_key(request), ready_only=ready)
        )


class RepositoryLoadApi(OipView):
    """Load warms, unload evicts, the version's session in the process that answers (an admin's
    tool: each web and gRPC process keeps its own session cache)."""

    permission_classes = [IsAdminUser, ApiKeyScope]
    required_scope = ApiKey.Scope.MODELS_WRITE

    @extend_schema(
        tags=[TAG], operation_id="v2_repository_model_action", request=None, responses={200: None, **_ERRORS}
    )
    def post(self, request: AuthenticatedRequest, name: str, action: str) -> HttpResponse:
        version = services.target(
            user=request.user, api_key=request_api_key(request), name=name, version=""
        ).version
        if action == "load":
            loaded_model(version)
        else:
            sessions().discard((version.pk, version.sha256))
        return HttpResponse(status=200)
