"""The audit trail: GET /predictions/, every prediction the caller may see, newest first."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.models import ApiKey
from apps.accounts.permissions import request_api_key
from apps.core.http import query_data
from apps.core.pagination import CursorPagination
from apps.core.schema import error_responses
from apps.inference import selectors
from apps.inference.models import Prediction


class PredictionOutputSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None)
    api_key = serializers.SerializerMethodField()
    oauth_application = serializers.CharField(
        source="oauth_application.client_id", default=None, help_text="The OAuth client, for a token's rows."
    )
    model = serializers.CharField(source="model_name")
    version = serializers.IntegerField(source="version_number")

    class Meta:
        model = Prediction
        fields = [
            "id",
            "created_at",
            "user",
            "api_key",
            "oauth_application",
            "model",
            "version",
            "alias",
            "route",
            "source",
            "status",
            "error_code",
            "error_message",
            "input_sha256",
            "input_meta",
            "output",
            "latency_ms",
            "request_id",
            "input_index",
            "client_address",
        ]

    def get_api_key(self, obj: Prediction) -> str | None:
        return f"mlp_{obj.api_key.prefix}" if obj.api_key is not None else None


class PredictionCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


class PredictionListApi(APIView):
    pagination_class = PredictionCursorPagination  # what its GET answers; the schema documents it
    required_scope = ApiKey.Scope.PREDICT

    class PredictionFilterSerializer(serializers.Serializer):
        model = serializers.SlugField(required=False)
        version = serializers.IntegerField(min_value=1, required=False)
        status = serializers.ChoiceField(choices=Prediction.Status.choices, required=False)
        # DRF's metaclass takes declared fields off the class, so this never shadows
        # Field.source, as the stubs believe.
        source = serializers.ChoiceField(choices=Prediction.Source.choices, required=False)  # type: ignore[assignment]
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        request_id = serializers.CharField(required=False)

        def validate(self, attrs: dict) -> dict:
            if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": "Must be after since."})
            return attrs

    @extend_schema(
        operation_id="predictions_list",
        parameters=[PredictionFilterSerializer],
        responses={200: PredictionOutputSerializer(many=True), **error_responses(400)},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        filters = self.PredictionFilterSerializer(data=query_data(request))
        filters.is_valid(raise_exception=True)
        predictions = selectors.prediction_list(
            user=request.user, filters=filters.validated_data, api_key=request_api_key(request)
        )
        paginator = PredictionCursorPagination()
        page = paginator.paginate_queryset(predictions, request, view=self)
        return paginator.get_paginated_response(PredictionOutputSerializer(page, many=True).data)
