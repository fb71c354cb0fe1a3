"""Registry API: aliases and their history. Views are thin: parse, call, render."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.registry import selectors, services
from apps.registry.apis.base import RegistryApi, visible_model, writable_model
from apps.registry.models import ModelAlias, ModelAliasHistory

# --- Output serializers, shared by several views ---------------------------------------------


class AliasOutputSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")
    updated_by = serializers.CharField(source="updated_by.username", default=None)

    class Meta:
        model = ModelAlias
        fields = ["name", "version", "updated_by", "created_at", "updated_at"]


class AliasHistoryOutputSerializer(serializers.ModelSerializer):
    alias = serializers.CharField(source="alias_name")
    changed_by = serializers.CharField(source="changed_by.username", default=None)

    class Meta:
        model = ModelAliasHistory
        fields = ["alias", "action", "from_number", "to_number", "changed_by", "changed_at"]


# --- Aliases --------------------------------------------------------------------------------


class AliasListApi(RegistryApi):
    @extend_schema(
        operation_id="aliases_list", responses={200: AliasOutputSerializer(many=True), **error_responses(404)}
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        return Response(AliasOutputSerializer(selectors.alias_list(model=model), many=True).data)


class AliasDetailApi(RegistryApi):
    class AliasSetInputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        force = serializers.BooleanField(
            default=False, help_text="Admins: allow a version refused only by its accuracy gate."
        )

    @extend_schema(
        operation_id="aliases_retrieve", responses={200: AliasOutputSerializer, **error_responses(404)}
    )
    def get(self, request: AuthenticatedRequest, name: str, alias: str) -> Response:
        model = visible_model(request, name)
        return Response(AliasOutputSerializer(selectors.alias_get(model=model, name=alias)).data)

    @extend_schema(
        operation_id="aliases_set",
        request=AliasSetInputSerializer,
        responses={200: AliasOutputSerializer, **error_responses(400, 403, 404, 409)},
    )
    def put(self, request: AuthenticatedRequest, name: str, alias: str) -> Response:
        model = writable_model(request, name)
        serializer = self.AliasSetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = selectors.version_get(model=model, number=serializer.validated_data["version"])
        result = services.alias_set(
            model=model,
            name=alias,
            version=version,
            user=request.user,
            force=serializer.validated_data["force"],
        )
        return Response(AliasOutputSerializer(result).data)

    @extend_schema(operation_id="aliases_destroy", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: AuthenticatedRequest, name: str, alias: str) -> Response:
        model = writable_model(request, name)
        services.alias_delete(alias=selectors.alias_get(model=model, name=alias), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AliasHistoryApi(RegistryApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    @extend_schema(
        operation_id="alias_history_list",
        parameters=[OpenApiParameter("alias", str, description="Only this alias's changes.")],
        responses={200: AliasHistoryOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        history = selectors.alias_history_list(model=model, name=request.query_params.get("alias"))
        return paginated_response(request, self, history, AliasHistoryOutputSerializer)
