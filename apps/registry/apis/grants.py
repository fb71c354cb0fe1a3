"""Registry API: grants (a user's role on a model). Views are thin: parse, call, render."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.models import User
from apps.core.exceptions import NotFound
from apps.core.schema import error_responses
from apps.registry import selectors, services
from apps.registry.apis.base import RegistryApi, managed_model, writable_model
from apps.registry.models import ModelGrant

# --- Grants -----------------------------------------------------------------------------------


class GrantOutputSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    granted_by = serializers.CharField(source="granted_by.username", default=None)

    class Meta:
        model = ModelGrant
        fields = ["user", "role", "granted_by", "created_at"]


class GrantListApi(RegistryApi):
    @extend_schema(
        operation_id="grants_list",
        responses={200: GrantOutputSerializer(many=True), **error_responses(403, 404)},
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = writable_model(request, name)
        return Response(GrantOutputSerializer(selectors.grant_list(model=model), many=True).data)


class GrantDetailApi(RegistryApi):
    class GrantSetInputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=ModelGrant.Role.choices)

    @extend_schema(
        operation_id="grants_set",
        request=GrantSetInputSerializer,
        responses={200: GrantOutputSerializer, **error_responses(400, 403, 404)},
    )
    def put(self, request: AuthenticatedRequest, name: str, username: str) -> Response:
        model = managed_model(request, name)
        serializer = self.GrantSetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grantee = User.objects.filter(username=username, is_active=True).first()
        if grantee is None:
            raise NotFound(f"No user named '{username}'.", code="user_not_found")
        grant = services.grant_set(
            model=model, user=grantee, role=serializer.validated_data["role"], granted_by=request.user
        )
        return Response(GrantOutputSerializer(grant).data)

    @extend_schema(operation_id="grants_destroy", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: AuthenticatedRequest, name: str, username: str) -> Response:
        model = managed_model(request, name)
        services.grant_delete(model=model, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)
