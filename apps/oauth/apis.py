"""Managing OAuth applications and their tokens, under /api/v1/oauth/applications/."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.models import ApiKey
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.oauth import selectors, services
from apps.oauth.models import Application

TAG = "OAuth applications"
GRANT_NAMES: dict[str, str] = {value: name for name, value in services.GRANT_TYPES.items()}


class ApplicationOutputSerializer(serializers.ModelSerializer):
    grant_type = serializers.SerializerMethodField()
    redirect_uris = serializers.SerializerMethodField()
    models = serializers.ListField(source="model_names", child=serializers.CharField())
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="created")
    updated_at = serializers.DateTimeField(source="updated")

    class Meta:
        model = Application
        fields = [
            "id",
            "name",
            "client_id",
            "client_type",
            "grant_type",
            "redirect_uris",
            "scopes",
            "models",
            "status",
            "disabled_at",
            "created_at",
            "updated_at",
        ]

    def get_grant_type(self, obj: Application) -> str:
        grant_type: str = obj.authorization_grant_type  # a toolkit field (untyped)
        return GRANT_NAMES.get(grant_type, grant_type)

    def get_redirect_uris(self, obj: Application) -> list[str]:
        return obj.redirect_uris.split()

    def get_status(self, obj: Application) -> str:
        return "disabled" if obj.is_disabled else "active"


class ApplicationCreatedSerializer(ApplicationOutputSerializer):
    client_secret = serializers.CharField(
        allow_null=True, help_text="Shown only in this response; null for a public client. Store it now."
    )

    class Meta(ApplicationOutputSerializer.Meta):
        fields = ["client_secret", *ApplicationOutputSerializer.Meta.fields]


class TokenOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    user = serializers.CharField(source="user.username", allow_null=True)
    scopes = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    refreshable = serializers.BooleanField(help_text="A live refresh token is bound to it.")
    created_at = serializers.DateTimeField(source="created")
    expires_at = serializers.DateTimeField(source="expires")

    def get_scopes(self, obj: Any) -> list[str]:
        return sorted(obj.scope.split())

    def get_status(self, obj: Any) -> str:
        return "expired" if obj.is_expired() else "active"


def _redirect_uris(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(max_length=2000), max_length=20, **kwargs)


def _scopes(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.Scope.choices), min_length=1, max_length=4, **kwargs
    )


def _models(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.SlugField(max_length=100),
        max_length=100,
        help_text="Limit the application's tokens to these models (default: every model the user may use).",
        **kwargs,
    )


class ApplicationManagementApi(APIView):
    """Applications are managed with a password-backed login (JWT or session), never with an
    API key or an OAuth token (no required_scope: closed to both), so that a leaked token
    cannot register clients or read their tokens."""


class ApplicationListCreateApi(ApplicationManagementApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=255)
        grant_type = serializers.ChoiceField(choices=list(services.GRANT_TYPES))
        client_type = serializers.ChoiceField(
            choices=Application.CLIENT_TYPES, default=Application.CLIENT_CONFIDENTIAL
        )
        redirect_uris = _redirect_uris(required=False)
        scopes = _scopes()
        models = _models(required=False)

    @extend_schema(
        tags=[TAG],
        operation_id="oauth_applications_list",
        responses={200: ApplicationOutputSerializer(many=True), **error_responses(403)},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        applications = selectors.application_list(user=request.user)
        return paginated_response(request, self, applications, ApplicationOutputSerializer)

    @extend_schema(
        tags=[TAG],
        operation_id="oauth_applications_create",
        request=InputSerializer,
        responses={201: ApplicationCreatedSerializer, **error_responses(400, 403)},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        registered = services.application_create(
            owner=request.user,
            name=data["name"],
            grant_type=data["grant_type"],
            client_type=data["client_type"],
            redirect_uris=data.get("redirect_uris", []),
            scopes=data["scopes"],
            model_names=data.get("models", []),
        )
        body = ApplicationOutputSerializer(registered.application).data
        return Response(
            {"client_secret": registered.client_secret or None, **body}, status=status.HTTP_201_CREATED
        )


class ApplicationDetailApi(ApplicationManagementApi):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=255, required=False)
        redirect_uris = _redirect_uris(required=False)
        scopes = _scopes(required=False)
        models = _models(required=False)
        disabled = serializers.BooleanField(
            required=False, help_text="A disabled application gets no tokens, and its tokens stop working."
        )

    @extend_schema(
        tags=[TAG],
        operation_id="oauth_applications_retrieve",
        responses={200: ApplicationOutputSerializer, **error_responses(403, 404)},
    )
    def get(self, request: AuthenticatedRequest, application_id: int) -> Response:
        application = selectors.application_get(user=request.user, application_id=application_id)
        return Response(ApplicationOutputSerializer(application).data)

    @extend_schema(
        tags=[TAG],
        operation_id="oauth_applications_update",
        request=InputSerializer,
        responses={200: ApplicationOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: AuthenticatedRequest, application_id: int) -> Response:
        application = selectors.application_get(user=request.user, application_id=application_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "models" in changes:
            changes["model_names"] = changes.pop("models")
        application = services.application_update(application=application, **changes)
        return Response(ApplicationOutputSerializer(application).data)


class ApplicationSecretApi(ApplicationManagementApi):
    @extend_schema(
        tags=[TAG],
        operation_id="oauth_applications_new_secret",
        request=None,
        responses={201: ApplicationCreatedSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: AuthenticatedRequest, application_id: int) -> Response:
        """A new client secret, shown once; the old one stops working at once."""
        application = selectors.application_get(user=request.user, application_id=application_id)
        secret = services.application_new_secret(application=application)
        body = ApplicationOutputSerializer(application).data
        return Response({"client_secret": secret, **body}, status=status.HTTP_201_CREATED)


class TokenListApi(ApplicationManagementApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    @extend_schema(
        tags=[TAG],
        operation_id="oauth_application_tokens_list",
        responses={200: TokenOutputSerializer(many=True), **error_responses(403, 404)},
    )
    def get(self, request: AuthenticatedRequest, application_id: int) -> Response:
        application = selectors.application_get(user=request.user, application_id=application_id)
        return paginated_response(
            request, self, selectors.token_list(application=application), TokenOutputSerializer
        )

    @extend_schema(
        tags=[TAG],
        operation_id="oauth_application_tokens_revoke_all",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: AuthenticatedRequest, application_id: int) -> Response:
        """Revoke every access and refresh token of the application."""
        application = selectors.application_get(user=request.user, application_id=application_id)
        services.application_revoke_tokens(application=application)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenDetailApi(ApplicationManagementApi):
    @extend_schema(
        tags=[TAG],
        operation_id="oauth_application_tokens_revoke",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: AuthenticatedRequest, application_id: int, token_id: int) -> Response:
        """Revoke one access token and the refresh token bound to it."""
        application = selectors.application_get(user=request.user, application_id=application_id)
        services.token_revoke(access_token=selectors.token_get(application=application, token_id=token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
