"""Registry API: models, versions (upload), aliases. Views are thin: parse, call, render."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.models import User
from apps.accounts.permissions import RegistryScope, request_api_key
from apps.core.exceptions import NotFound, PayloadTooLarge
from apps.core.http import content_length
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.core.uploads import UploadLimits
from apps.registry import selectors, services
from apps.registry.intake import formats
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelGrant, ModelVersion
from apps.registry.preprocessing import PreprocessingConfigSerializer

# Multipart framing around the file is small; allow for it when checking Content-Length.
_MULTIPART_SLACK_BYTES = 1024 * 1024


def visible_model(request: AuthenticatedRequest, name: str) -> MLModel:
    return selectors.model_get_visible(user=request.user, name=name, api_key=request_api_key(request))


def writable_model(request: AuthenticatedRequest, name: str) -> MLModel:
    """The model if the user may change it; 404 if they cannot see it, 403 if they only see it."""
    model = visible_model(request, name)
    if not selectors.model_can_write(user=request.user, model=model):
        raise PermissionDenied("Only the model's owner, its maintainers or an admin may change it.")
    return model


def managed_model(request: AuthenticatedRequest, name: str) -> MLModel:
    """The model if the user owns it (or is an admin): deleting it and granting roles."""
    model = visible_model(request, name)
    if not selectors.model_can_manage(user=request.user, model=model):
        raise PermissionDenied("Only the model's owner or an admin may do this.")
    return model


class RegistryApi(RegistryScope, APIView):
    """Base of registry views: `models:read` / `models:write` key scopes, and writes
    counted against the user's `registry_write` rate."""

    def get_throttle_scope(self, request: Request) -> str | None:
        return None if request.method in ("GET", "HEAD", "OPTIONS") else "registry_write"


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
