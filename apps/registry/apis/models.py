"""Registry API: models. Views are thin: parse, call, render."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.permissions import request_api_key
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.registry import selectors, services
from apps.registry.apis.base import RegistryApi, managed_model, visible_model, writable_model
from apps.registry.models import MLModel

# --- Output serializers, shared by several views ---------------------------------------------


class ModelOutputSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")
    latest_version = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = MLModel
        fields = [
            "name",
            "description",
            "task",
            "visibility",
            "owner",
            "latest_version",
            "aliases",
            "created_at",
            "updated_at",
        ]

    def get_latest_version(self, obj: MLModel) -> int | None:
        return obj.next_version_number - 1 or None

    def get_aliases(self, obj: MLModel) -> dict[str, int]:
        return {alias.name: alias.version.number for alias in obj.aliases.select_related("version")}


# --- Models ---------------------------------------------------------------------------------


class ModelListCreateApi(RegistryApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    class ModelCreateInputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=100)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        task = serializers.ChoiceField(
            choices=MLModel.Task.choices, default=MLModel.Task.IMAGE_CLASSIFICATION
        )
        visibility = serializers.ChoiceField(
            choices=MLModel.Visibility.choices, default=MLModel.Visibility.PRIVATE
        )

    @extend_schema(
        operation_id="models_list",
        responses={200: ModelOutputSerializer(many=True), **error_responses()},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        models = selectors.model_list_visible(user=request.user, api_key=request_api_key(request))
        return paginated_response(request, self, models, ModelOutputSerializer)

    @extend_schema(
        operation_id="models_create",
        request=ModelCreateInputSerializer,
        responses={201: ModelOutputSerializer, **error_responses(400, 409)},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = self.ModelCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key = request_api_key(request)
        if api_key is not None and not api_key.allows_model(serializer.validated_data["name"]):
            raise PermissionDenied("This API key is not granted that model name.", code="model_not_granted")
        model = services.model_create(owner=request.user, **serializer.validated_data)
        return Response(ModelOutputSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(RegistryApi):
    class ModelUpdateInputSerializer(serializers.Serializer):
        description = serializers.CharField(required=False, allow_blank=True)
        task = serializers.ChoiceField(choices=MLModel.Task.choices, required=False)
        visibility = serializers.ChoiceField(choices=MLModel.Visibility.choices, required=False)

    @extend_schema(
        operation_id="models_retrieve", responses={200: ModelOutputSerializer, **error_responses(404)}
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        return Response(ModelOutputSerializer(model).data)

    @extend_schema(
        operation_id="models_update",
        request=ModelUpdateInputSerializer,
        responses={200: ModelOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: AuthenticatedRequest, name: str) -> Response:
        model = writable_model(request, name)
        serializer = self.ModelUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        model = services.model_update(model=model, data=serializer.validated_data, user=request.user)
        return Response(ModelOutputSerializer(model).data)

    @extend_schema(operation_id="models_destroy", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: AuthenticatedRequest, name: str) -> Response:
        services.model_delete(model=managed_model(request, name))
        return Response(status=status.HTTP_204_NO_CONTENT)
