"""Registry API: models, versions (upload), aliases. Views are thin: parse, call, render."""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import PayloadTooLarge
from apps.core.pagination import LimitOffsetPagination
from apps.core.schema import error_responses
from apps.registry import selectors, services
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelVersion
from apps.registry.preprocessing import PreprocessingConfigSerializer

# Multipart framing around the file is small; allow for it when checking Content-Length.
_MULTIPART_SLACK_BYTES = 1024 * 1024


def _paginate(request: Request, view: APIView, queryset: Any, serializer_class: type) -> Response:
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _writable_model(request: Request, name: str) -> MLModel:
    """The model if the user may change it; 404 if they cannot see it, 403 if only see it."""
    model = selectors.model_get_visible(user=request.user, name=name)
    if not selectors.model_can_write(user=request.user, model=model):
        from rest_framework.exceptions import PermissionDenied

        raise PermissionDenied("Only the model's owner or an admin may change it.")
    return model


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


class VersionOutputSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="number")
    created_by = serializers.CharField(source="created_by.username", default=None)
    derived_from = serializers.IntegerField(source="derived_from.number", default=None)
    aliases = serializers.SerializerMethodField()
    labels_count = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "version",
            "status",
            "status_reason",
            "sha256",
            "size_bytes",
            "signature",
            "preprocessing",
            "labels_count",
            "labels",
            "metrics",
            "notes",
            "aliases",
            "derived_from",
            "created_by",
            "created_at",
            "validated_at",
            "archived_at",
        ]

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in obj.aliases.all())

    def get_labels_count(self, obj: ModelVersion) -> int:
        return len(obj.labels)


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


# --- Models ---------------------------------------------------------------------------------


class ModelListCreateApi(APIView):
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
    def get(self, request: Request) -> Response:
        models = selectors.model_list_visible(user=request.user)
        return _paginate(request, self, models, ModelOutputSerializer)

    @extend_schema(
        operation_id="models_create",
        request=ModelCreateInputSerializer,
        responses={201: ModelOutputSerializer, **error_responses(400, 409)},
    )
    def post(self, request: Request) -> Response:
        serializer = self.ModelCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = services.model_create(owner=request.user, **serializer.validated_data)
        return Response(ModelOutputSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    class ModelUpdateInputSerializer(serializers.Serializer):
        description = serializers.CharField(required=False, allow_blank=True)
        task = serializers.ChoiceField(choices=MLModel.Task.choices, required=False)
        visibility = serializers.ChoiceField(choices=MLModel.Visibility.choices, required=False)

    @extend_schema(
        operation_id="models_retrieve", responses={200: ModelOutputSerializer, **error_responses(404)}
    )
    def get(self, request: Request, name: str) -> Response:
        model = selectors.model_get_visible(user=request.user, name=name)
        return Response(ModelOutputSerializer(model).data)

    @extend_schema(
        operation_id="models_update",
        request=ModelUpdateInputSerializer,
        responses={200: ModelOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, name: str) -> Response:
        model = _writable_model(request, name)
        serializer = self.ModelUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        model = services.model_update(model=model, data=serializer.validated_data)
        return Response(ModelOutputSerializer(model).data)

    @extend_schema(operation_id="models_destroy", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: Request, name: str) -> Response:
        services.model_delete(model=_writable_model(request, name))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Versions -------------------------------------------------------------------------------


class VersionListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class VersionUploadInputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="The .onnx model, one self-contained file.")
        labels = serializers.FileField(
            required=False, help_text="Text file with one label per line, or a JSON list."
        )
        preprocessing = serializers.CharField(
            required=False, help_text="Preprocessing config as JSON (see PreprocessingConfig)."
        )
        notes = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="versions_list",
        parameters=[OpenApiParameter("status", str, enum=ModelVersion.Status.values)],
        responses={200: VersionOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        model = selectors.model_get_visible(user=request.user, name=name)
        versions = selectors.version_list(model=model, status=request.query_params.get("status"))
        return _paginate(request, self, versions, VersionOutputSerializer)

    @extend_schema(
        operation_id="versions_create",
        request={"multipart/form-data": VersionUploadInputSerializer},
        responses={201: VersionOutputSerializer, **error_responses(400, 403, 404, 409, 413, 415, 422)},
    )
    def post(self, request: Request, name: str) -> Response:
        # Refuse an oversized body before parsing (and spooling) it.
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        limit = settings.MODEL_UPLOAD_MAX_BYTES
        if length > limit + _MULTIPART_SLACK_BYTES:
            raise PayloadTooLarge(
                f"The upload is {length} bytes; the limit is {limit} bytes.", details={"limit_bytes": limit}
            )
        model = _writable_model(request, name)
        serializer = self.VersionUploadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        labels = data.get("labels")
        version = services.model_version_create(
            model=model,
            file=data["file"],
            created_by=request.user,
            labels=labels.read() if labels else None,
            preprocessing=data.get("preprocessing"),
            notes=data["notes"],
        )
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(APIView):
    class VersionUpdateInputSerializer(serializers.Serializer):
        notes = serializers.CharField(required=False, allow_blank=True)
        labels = serializers.ListField(child=serializers.CharField(allow_blank=False), required=False)
        preprocessing = PreprocessingConfigSerializer(required=False)

    @extend_schema(
        operation_id="versions_retrieve", responses={200: VersionOutputSerializer, **error_responses(404)}
    )
    def get(self, request: Request, name: str, number: int) -> Response:
        model = selectors.model_get_visible(user=request.user, name=name)
        return Response(VersionOutputSerializer(selectors.version_get(model=model, number=number)).data)

    @extend_schema(
        operation_id="versions_update",
        request=VersionUpdateInputSerializer,
        responses={200: VersionOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, name: str, number: int) -> Response:
        model = _writable_model(request, name)
        version = selectors.version_get(model=model, number=number)
        serializer = self.VersionUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "preprocessing" in data:
            data["preprocessing"] = request.data["preprocessing"]  # re-validated, unknown keys refused
        version = services.model_version_update(version=version, data=data)
        return Response(VersionOutputSerializer(version).data)


class VersionArchiveApi(APIView):
    @extend_schema(
        operation_id="versions_archive",
        request=None,
        responses={200: VersionOutputSerializer, **error_responses(403, 404, 409)},
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        model = _writable_model(request, name)
        version = services.model_version_archive(version=selectors.version_get(model=model, number=number))
        return Response(VersionOutputSerializer(version).data)


# --- Aliases --------------------------------------------------------------------------------


class AliasListApi(APIView):
    @extend_schema(
        operation_id="aliases_list", responses={200: AliasOutputSerializer(many=True), **error_responses(404)}
    )
    def get(self, request: Request, name: str) -> Response:
        model = selectors.model_get_visible(user=request.user, name=name)
        return Response(AliasOutputSerializer(selectors.alias_list(model=model), many=True).data)


class AliasDetailApi(APIView):
    class AliasSetInputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)

    @extend_schema(
        operation_id="aliases_retrieve", responses={200: AliasOutputSerializer, **error_responses(404)}
    )
    def get(self, request: Request, name: str, alias: str) -> Response:
        model = selectors.model_get_visible(user=request.user, name=name)
        return Response(AliasOutputSerializer(selectors.alias_get(model=model, name=alias)).data)

    @extend_schema(
        operation_id="aliases_set",
        request=AliasSetInputSerializer,
        responses={200: AliasOutputSerializer, **error_responses(400, 403, 404, 409)},
    )
    def put(self, request: Request, name: str, alias: str) -> Response:
        model = _writable_model(request, name)
        serializer = self.AliasSetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = selectors.version_get(model=model, number=serializer.validated_data["version"])
        result = services.alias_set(model=model, name=alias, version=version, user=request.user)
        return Response(AliasOutputSerializer(result).data)

    @extend_schema(operation_id="aliases_destroy", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: Request, name: str, alias: str) -> Response:
        model = _writable_model(request, name)
        services.alias_delete(alias=selectors.alias_get(model=model, name=alias), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AliasHistoryApi(APIView):
    @extend_schema(
        operation_id="alias_history_list",
        parameters=[OpenApiParameter("alias", str, description="Only this alias's changes.")],
        responses={200: AliasHistoryOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        model = selectors.model_get_visible(user=request.user, name=name)
        history = selectors.alias_history_list(model=model, name=request.query_params.get("alias"))
        return _paginate(request, self, history, AliasHistoryOutputSerializer)
