"""Accounts API: JWT tokens, API keys, and the caller's profile, limits and usage."""

import datetime as dt

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views

from apps.accounts import selectors
from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.authentication import check_auth_failures, record_auth_failure
from apps.accounts.models import ApiKey
from apps.accounts.services.api_keys import api_key_create, api_key_revoke
from apps.accounts.services.quota import usage_for
from apps.core.exceptions import NotFound
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses

# --- JWT ------------------------------------------------------------------------------------------


class CountedFailuresMixin(jwt_views.TokenViewBase):
    """Failed attempts at a token endpoint count against the client address (AUTH_FAILURE_RATE);
    an address over the rate gets 429 before its credentials are looked at."""

    throttle_classes = []

    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        check_auth_failures(request)
        try:
            return super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            record_auth_failure(request)
            raise


class TokenObtainApi(CountedFailuresMixin, jwt_views.TokenObtainPairView):
    """Username + password → access and refresh tokens."""


class TokenRefreshApi(CountedFailuresMixin, jwt_views.TokenRefreshView):
    """A refresh token → a new access token and a new refresh token (the old one is blacklisted)."""


class TokenVerifyApi(CountedFailuresMixin, jwt_views.TokenVerifyView):
    """Whether a token is valid (200) or not (401)."""


# --- API keys -------------------------------------------------------------------------------------


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    models = serializers.ListField(source="model_names", child=serializers.CharField())
    status = serializers.SerializerMethodField()
    key_prefix = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "key_prefix",
            "scopes",
            "models",
            "rate_limit_per_minute",
            "status",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
        ]

    def get_status(self, obj: ApiKey) -> str:
        return "revoked" if obj.is_revoked else "expired" if obj.is_expired else "active"

    def get_key_prefix(self, obj: ApiKey) -> str:
        return f"mlp_{obj.prefix}"


class ApiKeyCreatedSerializer(ApiKeyOutputSerializer):
    key = serializers.CharField(help_text="The full key. Shown only in this response; store it now.")

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = ["key", *ApiKeyOutputSerializer.Meta.fields]


class KeyManagementApi(APIView):
    """Keys are managed with a password-backed login (JWT or session), never with a key,
    so that a leaked key cannot mint or revoke others. (No required_scope: closed to keys.)"""


class ApiKeyListCreateApi(KeyManagementApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    class ApiKeyCreateInputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=ApiKey.Scope.choices), min_length=1, max_length=4
        )
        models = serializers.ListField(
            child=serializers.SlugField(max_length=100),
            required=False,
            default=list,
            max_length=100,
            help_text="Limit the key to these models (default: every model you may use).",
        )
        expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
        rate_limit_per_minute = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)

    @extend_schema(
        operation_id="api_keys_list",
        responses={200: ApiKeyOutputSerializer(many=True), **error_responses(403)},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        return paginated_response(
            request, self, selectors.api_key_list(user=request.user), ApiKeyOutputSerializer
        )

    @extend_schema(
        operation_id="api_keys_create",
        request=ApiKeyCreateInputSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 403)},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = self.ApiKeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        days = data.get("expires_in_days")
        created = api_key_create(
            owner=request.user,
            name=data["name"],
            scopes=data["scopes"],
            model_names=data["models"],
            expires_at=timezone.now() + dt.timedelta(days=days) if days else None,
            rate_limit_per_minute=data.get("rate_limit_per_minute"),
        )
        body = ApiKeyOutputSerializer(created.api_key).data
        return Response({"key": created.key, **body}, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(KeyManagementApi):
    def _get(self, request: AuthenticatedRequest, key_id: int) -> ApiKey:
        api_key = selectors.api_key_list(user=request.user).filter(pk=key_id).first()
        if api_key is None:
            raise NotFound(f"No API key {key_id}.", code="api_key_not_found")
        return api_key

    @extend_schema(
        operation_id="api_keys_retrieve", responses={200: ApiKeyOutputSerializer, **error_responses(403, 404)}
    )
    def get(self, request: AuthenticatedRequest, key_id: int) -> Response:
        return Response(ApiKeyOutputSerializer(self._get(request, key_id)).data)

    @extend_schema(operation_id="api_keys_revoke", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: AuthenticatedRequest, key_id: int) -> Response:
        api_key_revoke(api_key=self._get(request, key_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Me -----------------------------------------------------------------------------------------


class UsageOutputSerializer(serializers.Serializer):
    period = serializers.CharField()
    predictions_used = serializers.IntegerField()
    monthly_prediction_quota = serializers.IntegerField(allow_null=True)
    remaining = serializers.IntegerField(allow_null=True)
    resets_at = serializers.DateField()


class MeOutputSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField(help_text="The account's e-mail address; empty if none was given.")
    is_staff = serializers.BooleanField()
    roles = serializers.ListField(child=serializers.CharField())
    authenticated_with = serializers.CharField()
    limits = serializers.DictField()
    usage = UsageOutputSerializer()


class MeApi(APIView):
    """Any authenticated caller, keys included, may read its own profile and usage."""

    allow_any_api_key = True

    @extend_schema(operation_id="me_retrieve", responses={200: MeOutputSerializer, **error_responses()})
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(selectors.profile(user=request.user, auth=request.auth))


class MeUsageApi(APIView):
    allow_any_api_key = True

    @extend_schema(operation_id="me_usage", responses={200: UsageOutputSerializer, **error_responses()})
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(usage_for(request.user))
