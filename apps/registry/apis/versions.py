"""Registry API: versions (upload). Views are thin: parse, call, render."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.core.exceptions import PayloadTooLarge
from apps.core.http import content_length
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.core.uploads import UploadLimits
from apps.registry import selectors, services
from apps.registry.apis.base import RegistryApi, visible_model, writable_model
from apps.registry.intake import formats
from apps.registry.models import ModelVersion
from apps.registry.preprocessing import PreprocessingConfigSerializer

# Multipart framing around the file is small; allow for it when checking Content-Length.
_MULTIPART_SLACK_BYTES = 1024 * 1024

# --- Output serializers, shared by several views ---------------------------------------------


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
            "failure_code",
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
            "optimization",
            "converted_from",
            "created_by",
            "created_at",
            "validated_at",
            "archived_at",
        ]

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in obj.aliases.all())

    def get_labels_count(self, obj: ModelVersion) -> int:
        return len(obj.labels)


# --- Versions -------------------------------------------------------------------------------


class VersionListCreateApi(RegistryApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it
    parser_classes = [MultiPartParser, FormParser]
    # the model file; a labels file is small (the default limit)
    upload_limits = UploadLimits(body="MODEL_UPLOAD_MAX_BYTES", fields={"file": "MODEL_UPLOAD_MAX_BYTES"})

    class VersionUploadInputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text="The model: a self-contained .onnx file, or a TensorFlow SavedModel folder as a "
            "zip or tar, a Keras .keras file, a TorchScript .pt (torch.jit.save) or a torch.export "
            ".pt2, converted to ONNX on a worker (status `converting`; docs/conversion.md)."
        )
        format = serializers.ChoiceField(
            choices=formats.FORMATS,
            required=False,
            help_text="The file's format; by default told from its name's ending. Checked against its bytes.",
        )
        input_signature = serializers.CharField(
            required=False,
            help_text='Required for TorchScript: JSON [{"name": "input", "dtype": "float32", '
            '"shape": [-1, 1, 8, 8]}], -1 for a dynamic dimension. Overrides a SavedModel\'s.',
        )
        signature_name = serializers.CharField(
            required=False, help_text="The SavedModel signature to convert, when it has several."
        )
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
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        status_filter = request.query_params.get("status")
        # the documented enum; an empty value too is not one of it
        if status_filter is not None and status_filter not in ModelVersion.Status.values:
            choices = ", ".join(ModelVersion.Status.values)
            raise serializers.ValidationError({"status": [f"One of {choices}."]})
        versions = selectors.version_list(model=model, status=status_filter)
        return paginated_response(request, self, versions, VersionOutputSerializer)

    @extend_schema(
        operation_id="versions_create",
        request={"multipart/form-data": VersionUploadInputSerializer},
        responses={201: VersionOutputSerializer, **error_responses(400, 403, 404, 409, 413, 415, 422)},
    )
    def post(self, request: AuthenticatedRequest, name: str) -> Response:
        model = writable_model(request, name)
        # Refuse an oversized body before parsing (and spooling) it.
        length = content_length(request)
        limit = settings.MODEL_UPLOAD_MAX_BYTES
        if length > limit + _MULTIPART_SLACK_BYTES:
            raise PayloadTooLarge(
                f"The upload is {length} bytes; the limit is {limit} bytes.", details={"limit_bytes": limit}
            )
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
            declared_format=data.get("format"),
            conversion_options={k: data[k] for k in ("input_signature", "signature_name") if k in data},
        )
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(RegistryApi):
    class VersionUpdateInputSerializer(serializers.Serializer):
        notes = serializers.CharField(required=False, allow_blank=True)
        labels = serializers.ListField(child=serializers.CharField(allow_blank=False), required=False)
        preprocessing = PreprocessingConfigSerializer(required=False)

    @extend_schema(
        operation_id="versions_retrieve", responses={200: VersionOutputSerializer, **error_responses(404)}
    )
    def get(self, request: AuthenticatedRequest, name: str, number: int) -> Response:
        model = visible_model(request, name)
        return Response(VersionOutputSerializer(selectors.version_get(model=model, number=number)).data)

    @extend_schema(
        operation_id="versions_update",
        request=VersionUpdateInputSerializer,
        responses={200: VersionOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: AuthenticatedRequest, name: str, number: int) -> Response:
        model = writable_model(request, name)
        version = selectors.version_get(model=model, number=number)
        serializer = self.VersionUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "preprocessing" in data:
            # As sent: re-validated, unknown keys refused
            data["preprocessing"] = serializer.initial_data["preprocessing"]
        version = services.model_version_update(version=version, data=data)
        return Response(VersionOutputSerializer(version).data)


class VersionArchiveApi(RegistryApi):
    @extend_schema(
        operation_id="versions_archive",
        request=None,
        responses={200: VersionOutputSerializer, **error_responses(403, 404, 409)},
    )
    def post(self, request: AuthenticatedRequest, name: str, number: int) -> Response:
        model = writable_model(request, name)
        version = services.model_version_archive(version=selectors.version_get(model=model, number=number))
        return Response(VersionOutputSerializer(version).data)
