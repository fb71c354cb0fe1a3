"""Optimization API: evaluation sets of a model, and optimization runs of its versions."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.core.exceptions import NotFound
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.core.uploads import UploadLimits
from apps.optimization import recipes
from apps.optimization.models import EvaluationSet, OptimizationRun
from apps.optimization.services.evaluation_sets import evaluation_set_create, evaluation_set_delete
from apps.optimization.services.lifecycle import optimization_request
from apps.registry import selectors as registry_selectors
from apps.registry.apis.base import RegistryApi, visible_model, writable_model


class EvaluationSetOutputSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = EvaluationSet
        fields = [
            "name",
            "model",
            "kind",
            "sha256",
            "size_bytes",
            "summary",
            "description",
            "created_by",
            "created_at",
        ]


class OptimizationOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="model.name")
    source_version = serializers.IntegerField(source="source_version.number")
    result_version = serializers.IntegerField(source="result_version.number", default=None)
    evaluation_set = serializers.CharField(source="evaluation_set.name", default=None)
    calibration_set = serializers.CharField(source="calibration_set.name", default=None)
    error = serializers.SerializerMethodField()

    class Meta:
        model = OptimizationRun
        fields = [
            "id",
            "url",
            "model",
            "source_version",
            "recipe",
            "params",
            "evaluation_set",
            "calibration_set",
            "status",
            "step",
            "progress",
            "result_version",
            "report",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_url(self, obj: OptimizationRun) -> str:
        return f"/api/v1/optimizations/{obj.pk}/"

    def get_error(self, obj: OptimizationRun) -> dict[str, str] | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None


def _evaluation_set(model: Any, name: str | None) -> EvaluationSet | None:
    return _evaluation_set_named(model, name) if name else None


def _evaluation_set_named(model: Any, name: str) -> EvaluationSet:
    found = EvaluationSet.objects.filter(model=model, name=name).first()
    if found is None:
        raise NotFound(
            f"Model '{model.name}' has no evaluation set '{name}'.", code="evaluation_set_not_found"
        )
    return found


class EvaluationSetListApi(RegistryApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it
    parser_classes = [MultiPartParser]
    upload_limits = UploadLimits(body="EVALUATION_SET_MAX_BYTES", file="EVALUATION_SET_MAX_BYTES")

    class EvaluationSetInputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=64)
        file = serializers.FileField(help_text="A zip of images in one folder per label, or JSON Lines.")
        description = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="evaluation_sets_list",
        responses={200: EvaluationSetOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        return paginated_response(request, self, model.evaluation_sets.all(), EvaluationSetOutputSerializer)

    @extend_schema(
        operation_id="evaluation_sets_create",
        request={"multipart/form-data": EvaluationSetInputSerializer},
        responses={201: EvaluationSetOutputSerializer, **error_responses(400, 403, 404, 409, 413, 422)},
    )
    def post(self, request: AuthenticatedRequest, name: str) -> Response:
        model = writable_model(request, name)
        data = self.EvaluationSetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = evaluation_set_create(
            model=model,
            name=data.validated_data["name"],
            upload=data.validated_data["file"],
            description=data.validated_data["description"],
            user=request.user,
        )
        return Response(EvaluationSetOutputSerializer(created).data, status=status.HTTP_201_CREATED)


class EvaluationSetDetailApi(RegistryApi):
    @extend_schema(
        operation_id="evaluation_sets_retrieve",
        responses={200: EvaluationSetOutputSerializer, **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, name: str, set_name: str) -> Response:
        model = visible_model(request, name)
        return Response(EvaluationSetOutputSerializer(_evaluation_set_named(model, set_name)).data)

    @extend_schema(operation_id="evaluation_sets_destroy", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: AuthenticatedRequest, name: str, set_name: str) -> Response:
        model = writable_model(request, name)
        evaluation_set_delete(evaluation_set=_evaluation_set_named(model, set_name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OptimizeApi(RegistryApi):
    parser_classes = [JSONParser]

    class OptimizeInputSerializer(serializers.Serializer):
        recipe = serializers.CharField(help_text=f"One of: {', '.join(recipes.RECIPES)}.")
        evaluation_set = serializers.SlugField(
            required=False, help_text="Labelled set: accuracy of source and result, and the gate."
        )
        calibration_set = serializers.SlugField(
            required=False,
            help_text="For static-int8 and auto-int8 (whose default is its evaluation set): the set whose"
            " inputs calibrate activations.",
        )
        calibration_method = serializers.ChoiceField(
            choices=sorted(recipes.CALIBRATION_METHODS), default="minmax", required=False
        )
        calibration_size = serializers.IntegerField(
            min_value=1, max_value=1000, required=False, help_text="Calibration inputs (default 200)."
        )
        per_channel = serializers.BooleanField(required=False, allow_null=True, default=None)
        max_top1_drop = serializers.FloatField(
            min_value=0, max_value=100, required=False, help_text="Percentage points (default 1)."
        )
        time_budget_seconds = serializers.FloatField(
            min_value=0,
            max_value=86400,
            required=False,
            help_text="auto-int8's time box (default OPTIMIZATION_AUTO_INT8_SECONDS, 900).",
        )

    @extend_schema(
        operation_id="versions_optimize",
        request=OptimizeInputSerializer,
        responses={202: OptimizationOutputSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    def post(self, request: AuthenticatedRequest, name: str, number: int) -> Response:
        """Derive a new version with a recipe, on a worker: 202 and the run to poll."""
        model = writable_model(request, name)
        version = registry_selectors.version_get(model=model, number=number)
        data = self.OptimizeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        keys = ["max_top1_drop"]
        if values["recipe"] == "static-int8":
            keys += ["calibration_method", "calibration_size", "per_channel"]
        elif values["recipe"] == "dynamic-int8":
            keys += ["per_channel"]
        elif values["recipe"] == "auto-int8":
            keys += ["calibration_size", "time_budget_seconds"]
        params = {k: values[k] for k in keys if values.get(k) is not None}
        run = optimization_request(
            version=version,
            recipe=values["recipe"],
            user=request.user,
            evaluation_set=_evaluation_set(model, values.get("evaluation_set")),
            calibration_set=_evaluation_set(model, values.get("calibration_set")),
            params=params,
        )
        response = Response(OptimizationOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/optimizations/{run.pk}/"
        return response


class ModelOptimizationListApi(RegistryApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    @extend_schema(
        operation_id="optimizations_list",
        responses={200: OptimizationOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        runs = model.optimizations.select_related("source_version", "result_version", "model")
        return paginated_response(request, self, runs, OptimizationOutputSerializer)


class OptimizationDetailApi(RegistryApi):
    @extend_schema(
        operation_id="optimizations_retrieve",
        responses={
            200: OptimizationOutputSerializer,
            **error_responses(404),
        },
    )
    def get(self, request: AuthenticatedRequest, run_id: str) -> Response:
        run = (
            OptimizationRun.objects.select_related("model", "source_version", "result_version")
            .filter(pk=run_id)
            .first()
        )
        if run is None or not registry_selectors.model_is_visible(user=request.user, model=run.model):
            raise NotFound("No such optimization.", code="optimization_not_found")
        visible_model(request, run.model.name)  # a key limited to other models gets 403
        return Response(OptimizationOutputSerializer(run).data)
