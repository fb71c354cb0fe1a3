"""Batch-job API: submit (202 + Location), list, poll, results, cancel, delete, webhooks."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import client_address
from apps.accounts.models import ApiKey
from apps.accounts.permissions import request_api_key
from apps.core.exceptions import InvalidInput, PayloadTooLarge
from apps.core.http import content_length, media_type
from apps.core.middleware import log_context
from apps.core.pagination import CursorPagination, paginated_response
from apps.core.schema import error_responses
from apps.jobs import inputs, selectors, services, webhooks
from apps.jobs.models import BatchJob, JobItem, WebhookDelivery, WebhookSecret


class JobOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="model_name")
    version = serializers.IntegerField(source="version_number")
    progress = serializers.SerializerMethodField()
    cancel_requested = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()
    results_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchJob
        fields = [
            "id",
            "url",
            "status",
            "model",
            "version",
            "alias",
            "kind",
            "top_k",
            "progress",
            "cancel_requested",
            "error",
            "webhook_url",
            "idempotency_key",
            "request_id",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "results_url",
        ]

    def to_representation(self, instance: BatchJob) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["alias"] = data["alias"] or None  # as predictions show it: null for a pinned version
        return data

    def get_url(self, obj: BatchJob) -> str:
        return f"/api/v1/jobs/{obj.pk}/"

    def get_results_url(self, obj: BatchJob) -> str:
        return f"/api/v1/jobs/{obj.pk}/results/"

    @extend_schema_field(
        inline_serializer(
            "JobProgress",
            {
                "total": serializers.IntegerField(),
                "done": serializers.IntegerField(),
                "succeeded": serializers.IntegerField(),
                "failed": serializers.IntegerField(),
                "percent": serializers.FloatField(),
                "items_per_second": serializers.FloatField(allow_null=True),
                "eta_seconds": serializers.FloatField(allow_null=True),
            },
        )
    )
    def get_progress(self, obj: BatchJob) -> dict[str, Any]:
        return selectors.job_progress(obj)

    def get_cancel_requested(self, obj: BatchJob) -> bool:
        return obj.cancel_requested_at is not None

    @extend_schema_field(
        inline_serializer(
            "JobError", {"code": serializers.CharField(), "message": serializers.CharField()}, allow_null=True
        )
    )
    def get_error(self, obj: BatchJob) -> dict[str, str] | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None

    def get_duration_seconds(self, obj: BatchJob) -> float | None:
        return selectors.job_duration(obj)


class JobListCreateApi(APIView):
    """Submit a batch job, or list your jobs."""

    parser_classes = [JSONParser, MultiPartParser]
    required_scope = ApiKey.Scope.JOBS

    def get_throttle_scope(self, request: Request) -> str | None:
        return "jobs" if request.method == "POST" else None

    class JobSubmitSerializer(serializers.Serializer):
        model = serializers.SlugField(max_length=100)
        version = serializers.IntegerField(min_value=1, required=False)
        alias = serializers.SlugField(max_length=64, required=False)
        top_k = serializers.IntegerField(min_value=1, max_value=settings.PREDICT_MAX_TOP_K, required=False)
        webhook_url = serializers.CharField(max_length=2000, required=False, allow_blank=True)

    class JobJsonInputSerializer(JobSubmitSerializer):
        images = serializers.ListField(
            child=serializers.CharField(), required=False, help_text="Base64 images (or data: URLs)."
        )
        inputs = serializers.ListField(
            child=serializers.DictField(), required=False, help_text="One object of named tensors per item."
        )

    class JobFilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=BatchJob.Status.choices, required=False)
        model = serializers.SlugField(required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[JobFilterSerializer],
        responses={200: JobOutputSerializer(many=True), **error_responses(400)},
    )
    def get(self, request: Request) -> Response:
        filters = self.JobFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(
            user=request.user, filters=filters.validated_data, api_key=request_api_key(request)
        )
        return paginated_response(request, self, jobs, JobOutputSerializer)

    @extend_schema(
        operation_id="jobs_submit",
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="The same key from the same user returns the original job (200), never a second.",
            )
        ],
        request={
            "multipart/form-data": inline_serializer(
                "JobMultipartInput",
                {
                    "model": serializers.CharField(),
                    "version": serializers.IntegerField(),
                    "alias": serializers.CharField(),
                    "top_k": serializers.IntegerField(),
                    "webhook_url": serializers.URLField(),
                    "inputs": serializers.ListField(child=serializers.FileField()),
                    "archive": serializers.ListField(
                        child=serializers.FileField(), help_text="zip or tar (.gz, .bz2, .xz) of images"
                    ),
                },
            ),
            "application/json": JobJsonInputSerializer,
        },
        responses={
            202: JobOutputSerializer,
            200: JobOutputSerializer,
            **error_responses(400, 403, 404, 409, 413, 415, 422, 429),
        },
    )
    def post(self, request: Request) -> Response:
        submission = submission_from_request(request)
        job, created = services.job_submit(submission=submission)
        log_context(request).update(model=job.model_name, version=job.version_number, job=str(job.pk))
        return job_accepted(job, created)


def submission_from_request(
    request: Request, *, model: str | None = None, images: list[Any] | None = None
) -> services.JobSubmission:
    """A JobSubmission from a job request (or, with `model`, from a predict request whose
    version, alias and top_k come in the query; `images` when its body is already parsed)."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 255:
        raise InvalidInput("Idempotency-Key is at most 255 characters.", code="invalid_idempotency_key")
    api_key = request_api_key(request)
    if api_key is not None and not api_key.has_scope(ApiKey.Scope.JOBS):
        raise PermissionDenied(
            "This request becomes a batch job, which needs an API key with the 'jobs' scope.",
            code="scope_missing",
        )
    length = content_length(request)
    if length > settings.JOB_MAX_BYTES:
        raise PayloadTooLarge(
            f"The request body is {length} bytes; a job's inputs may total at most {settings.JOB_MAX_BYTES}.",
            code="job_too_large",
            details={"limit_bytes": settings.JOB_MAX_BYTES},
        )
    is_multipart = media_type(request).startswith("multipart/")
    data = request.data if hasattr(request.data, "get") else {}
    fields = {k: data.get(k) for k in ("model", "version", "alias", "top_k", "webhook_url") if data.get(k)}
    if model is not None:
        # As the synchronous predict reads them: the version from the query only, top_k from
        # the query or the body.
        fields = {"model": model, **({"top_k": fields["top_k"]} if "top_k" in fields else {})}
        for name in ("version", "alias", "top_k"):
            if request.query_params.get(name):
                fields[name] = request.query_params[name]
    meta = JobListCreateApi.JobSubmitSerializer(data=fields)
    meta.is_valid(raise_exception=True)
    submission = services.JobSubmission(
        user=request.user,
        api_key=request_api_key(request),
        model=meta.validated_data["model"],
        version=meta.validated_data.get("version"),
        alias=meta.validated_data.get("alias"),
        top_k=meta.validated_data.get("top_k") or settings.PREDICT_DEFAULT_TOP_K,
        webhook_url=meta.validated_data.get("webhook_url", ""),
        idempotency_key=key,
        request_id=getattr(request._request, "request_id", ""),
        client_address=client_address(request),
    )
    if images is not None:  # a predict body, already parsed
        for index, image in enumerate(images):  # the per-input limit, as for files sent to /jobs/
            if len(image.data) > settings.JOB_MAX_ITEM_BYTES:
                raise inputs.item_too_large(image.filename or f"images[{index}]")
        submission.sources = [
            iter(
                [
                    inputs.JobInput(data=i.data, filename=i.filename, content_type=i.content_type)
                    for i in images
                ]
            )
        ]
    elif media_type(request).startswith("image/"):
        body = request.data if isinstance(request.data, bytes) else b""
        if not body:
            raise InvalidInput("The request body is empty.", code="empty_job")
        submission.sources = [iter([inputs.JobInput(data=body, content_type=media_type(request))])]
    elif is_multipart:
        files = [*request.FILES.getlist("inputs"), *request.FILES.getlist("image")]
        submission.sources = [inputs.uploaded_files(files)]
        submission.sources += [inputs.archive_inputs(a) for a in request.FILES.getlist("archive")]
    else:
        if model is None:  # a predict body was checked by the predict view's own rules
            body = JobListCreateApi.JobJsonInputSerializer(data=data)
            body.is_valid(raise_exception=True)
        given = [name for name in ("images", "inputs", "image") if name in data]
        if len(given) != 1:
            raise InvalidInput("Send exactly one of 'images' or 'inputs'.", code="no_input")
        if given[0] == "inputs":
            submission.kind = "tensor"
            values = data["inputs"] if isinstance(data["inputs"], list) else [data["inputs"]]
            submission.sources = [inputs.tensor_inputs(values)]
        else:
            values = data[given[0]] if isinstance(data[given[0]], list) else [data[given[0]]]
            submission.sources = [inputs.base64_images(values)]
    return submission


def job_accepted(job: BatchJob, created: bool) -> Response:
    response = Response(
        JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    )
    response["Location"] = f"/api/v1/jobs/{job.pk}/"
    return response


class JobDetailApi(APIView):
    required_scope = ApiKey.Scope.JOBS

    @extend_schema(operation_id="jobs_retrieve", responses={200: JobOutputSerializer, **error_responses(404)})
    def get(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        return Response(JobOutputSerializer(job).data)

    @extend_schema(operation_id="jobs_delete", responses={204: None, **error_responses(404, 409)})
    def delete(self, request: Request, job_id: str) -> Response:
        """Delete a finished job and its stored inputs; its audit rows (predictions) stay."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        services.job_delete(job=job)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobCancelApi(APIView):
    required_scope = ApiKey.Scope.JOBS

    @extend_schema(
        operation_id="jobs_cancel",
        request=None,
        responses={200: JobOutputSerializer, 202: JobOutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request: Request, job_id: str) -> Response:
        """A queued job is cancelled at once (200); a running one stops after its current batch (202)."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        job = services.job_cancel(job=job)
        code = status.HTTP_200_OK if job.is_finished else status.HTTP_202_ACCEPTED
        return Response(JobOutputSerializer(job).data, status=code)


class JobResultOutputSerializer(serializers.ModelSerializer):
    output = serializers.JSONField(allow_null=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = JobItem
        fields = ["index", "filename", "status", "output", "error"]

    def to_representation(self, instance: JobItem) -> dict[str, Any]:
        return selectors.item_result(instance)

    def get_error(self, obj: JobItem) -> dict[str, str] | None:
        return selectors.item_result(obj)["error"]


class ResultCursorPagination(CursorPagination):
    ordering = "index"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class JobResultsApi(APIView):
    required_scope = ApiKey.Scope.JOBS

    class ResultFilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=[JobItem.Status.SUCCEEDED, JobItem.Status.FAILED], required=False
        )
        download = serializers.ChoiceField(
            choices=["jsonl", "csv"], required=False, help_text="Stream every result as JSON Lines or CSV."
        )

    @extend_schema(
        operation_id="jobs_results",
        parameters=[ResultFilterSerializer],
        responses={
            (200, "application/json"): JobResultOutputSerializer(many=True),
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(400, 404),
        },
    )
    def get(self, request: Request, job_id: str) -> Any:
        """Finished items in input order (cursor-paginated), or all of them streamed."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        params = self.ResultFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        items = selectors.job_results(job=job, status=params.validated_data.get("status"))
        download = params.validated_data.get("download")
        if download:
            stream = _jsonl(items) if download == "jsonl" else _csv(items)
            content_type = "application/x-ndjson" if download == "jsonl" else "text/csv"
            response = StreamingHttpResponse(stream, content_type=content_type)
            response["Content-Disposition"] = f'attachment; filename="job-{job.pk}.{download}"'
            return response
        paginator = ResultCursorPagination()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response([selectors.item_result(item) for item in page])


def _jsonl(items: Any) -> Iterator[str]:
    for item in items.iterator(chunk_size=1000):
        yield json.dumps(selectors.item_result(item), separators=(",", ":")) + "\n"


def _csv(items: Any) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    writer.writerow(
        ["index", "filename", "status", "label", "score", "error_code", "error_message", "output"]
    )
    yield flush()
    for item in items.iterator(chunk_size=1000):
        best = (item.output.get("top_k") or [{}])[0] if item.output else {}
        writer.writerow(
            [
                item.index,
                item.filename,
                item.status,
                best.get("label", ""),
                best.get("score", ""),
                item.error_code,
                item.error_message,
                json.dumps(item.output, separators=(",", ":")) if item.output else "",
            ]
        )
        yield flush()


class WebhookDeliveryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["attempt", "url", "event", "status_code", "succeeded", "error", "duration_ms", "created_at"]


class JobWebhookDeliveriesApi(APIView):
    required_scope = ApiKey.Scope.JOBS

    @extend_schema(
        operation_id="jobs_webhook_deliveries",
        responses={200: WebhookDeliveryOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: Request, job_id: str) -> Response:
        """Every attempt to deliver this job's webhook."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        return paginated_response(
            request, self, job.webhook_deliveries.all(), WebhookDeliveryOutputSerializer
        )


class WebhookSecretApi(APIView):
    required_scope = ApiKey.Scope.JOBS

    class WebhookSecretOutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = WebhookSecret
            fields = ["secret", "rotated_at"]

    @extend_schema(operation_id="webhook_secret_retrieve", responses={200: WebhookSecretOutputSerializer})
    def get(self, request: Request) -> Response:
        """The secret that signs your webhooks (header X-MLPlatform-Signature: t=…,v1=HMAC-SHA256)."""
        webhooks.secret_for(request.user)
        return Response(self.WebhookSecretOutputSerializer(request.user.webhook_secret).data)

    @extend_schema(
        operation_id="webhook_secret_rotate", request=None, responses={200: WebhookSecretOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        """Replace the secret; deliveries from now on are signed with the new one."""
        from apps.jobs.models import _new_secret

        secret, _ = WebhookSecret.objects.update_or_create(
            user=request.user, defaults={"secret": _new_secret()}
        )
        return Response(self.WebhookSecretOutputSerializer(secret).data)
