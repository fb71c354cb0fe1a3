"""Batch-job API: submit (202 + Location), list, poll, results, cancel, delete, webhooks."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.models import ApiKey
from apps.accounts.permissions import request_api_key
from apps.core.http import query_data
from apps.core.middleware import log_context
from apps.core.pagination import CursorPagination, LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.core.uploads import JOB_INPUT_LIMITS
from apps.jobs import selectors, services, webhook_signing, webhooks
from apps.jobs.http import JobJsonInputSerializer, job_accepted, submission_from_request
from apps.jobs.models import BatchJob, JobItem, WebhookSecret
from apps.jobs.serializers import (
    JobOutputSerializer,
    JobResultOutputSerializer,
    WebhookDeliveryOutputSerializer,
)


class JobListCreateApi(APIView):
    """Submit a batch job, or list your jobs."""

    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    parser_classes = [JSONParser, MultiPartParser]
    upload_limits = JOB_INPUT_LIMITS
    required_scope = ApiKey.Scope.JOBS

    def get_throttle_scope(self, request: Request) -> str | None:
        return "jobs" if request.method == "POST" else None

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
    def get(self, request: AuthenticatedRequest) -> Response:
        filters = self.JobFilterSerializer(data=query_data(request))
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
                description=(
                    'A structured-field string, e.g. "order-42" with the quotes (unquoted: the same key). '
                    "The same key from the same user returns the original job (200), never a second; "
                    "with a different payload 422 idempotency_key_reused; while its first request is "
                    "still being processed 409 idempotency_key_in_use."
                ),
            )
        ],
        request={
            "multipart/form-data": inline_serializer(
                "JobMultipartInput",
                {
                    # Only the model is required: the rest as the JSON body's (JobSubmitSerializer).
                    "model": serializers.CharField(),
                    "version": serializers.IntegerField(min_value=1, required=False),
                    "alias": serializers.CharField(required=False, help_text="Default: production."),
                    "top_k": serializers.IntegerField(min_value=1, required=False),
                    "webhook_url": serializers.URLField(required=False),
                    "inputs": serializers.ListField(
                        child=serializers.FileField(), required=False, help_text="Images, one per item."
                    ),
                    "archive": serializers.ListField(
                        child=serializers.FileField(),
                        required=False,
                        help_text="zip or tar (.gz, .bz2, .xz) of images",
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
    def post(self, request: AuthenticatedRequest) -> Response:
        submission = submission_from_request(request)
        job, created = services.job_submit(submission=submission)
        log_context(request).update(model=job.model_name, version=job.version_number, job=str(job.pk))
        return job_accepted(job, created)


class JobDetailApi(APIView):
    required_scope = ApiKey.Scope.JOBS

    @extend_schema(operation_id="jobs_retrieve", responses={200: JobOutputSerializer, **error_responses(404)})
    def get(self, request: AuthenticatedRequest, job_id: str) -> Response:
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        return Response(JobOutputSerializer(job).data)

    @extend_schema(operation_id="jobs_delete", responses={204: None, **error_responses(404, 409)})
    def delete(self, request: AuthenticatedRequest, job_id: str) -> Response:
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
    def post(self, request: AuthenticatedRequest, job_id: str) -> Response:
        """A queued job is cancelled at once (200); a running one stops after its current batch (202)."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        job = services.job_cancel(job=job)
        code = status.HTTP_200_OK if job.is_finished else status.HTTP_202_ACCEPTED
        return Response(JobOutputSerializer(job).data, status=code)


class ResultCursorPagination(CursorPagination):
    ordering = "index"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class JobResultsApi(APIView):
    pagination_class = ResultCursorPagination  # what its GET answers; the schema documents it
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
    def get(self, request: AuthenticatedRequest, job_id: str) -> Any:
        """Finished items in input order (cursor-paginated), or all of them streamed."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        params = self.ResultFilterSerializer(data=query_data(request))
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


class JobWebhookDeliveriesApi(APIView):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it
    required_scope = ApiKey.Scope.JOBS

    @extend_schema(
        operation_id="jobs_webhook_deliveries",
        responses={200: WebhookDeliveryOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, job_id: str) -> Response:
        """Every attempt to deliver this job's webhook."""
        job = selectors.job_get_visible(user=request.user, job_id=job_id, api_key=request_api_key(request))
        return paginated_response(
            request, self, job.webhook_deliveries.all(), WebhookDeliveryOutputSerializer
        )


class WebhookSecretApi(APIView):
    required_scope = ApiKey.Scope.JOBS
    parser_classes = [JSONParser]  # a JSON object, as documented (a form body was read as `{}`)

    class WebhookSecretOutputSerializer(serializers.ModelSerializer):
        legacy_secret = serializers.SerializerMethodField(
            help_text="The same key as the legacy X-MLPlatform-Signature header's verifiers use it."
        )

        class Meta:
            model = WebhookSecret
            fields = ["secret", "legacy_secret", "rotated_at", "previous_valid_until"]

        def get_legacy_secret(self, obj: WebhookSecret) -> str:
            return webhook_signing.legacy_secret(obj.secret)

    class WebhookSecretRotateInputSerializer(serializers.Serializer):
        overlap_seconds = serializers.IntegerField(
            min_value=0,
            max_value=webhooks.MAX_SECRET_OVERLAP_SECONDS,
            required=False,
            help_text="How long the replaced secret keeps signing too (default "
            "WEBHOOK_SECRET_OVERLAP_SECONDS; 0 stops it at once).",
        )

    @extend_schema(operation_id="webhook_secret_retrieve", responses={200: WebhookSecretOutputSerializer})
    def get(self, request: AuthenticatedRequest) -> Response:
        """The secret that signs your webhooks (Standard Webhooks: webhook-id, webhook-timestamp,
        webhook-signature; and the legacy X-MLPlatform-Signature for a transition period)."""
        return Response(self.WebhookSecretOutputSerializer(webhooks.secret_for(request.user)).data)

    @extend_schema(
        operation_id="webhook_secret_rotate",
        request=WebhookSecretRotateInputSerializer,
        responses={200: WebhookSecretOutputSerializer, **error_responses(400)},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        """Replace the secret. Deliveries from now on are signed with the new one and, until
        `previous_valid_until`, with the replaced one too (both in webhook-signature)."""
        body = self.WebhookSecretRotateInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        overlap = body.validated_data.get("overlap_seconds")
        secret = webhooks.rotate_secret(request.user, overlap_seconds=overlap)
        return Response(self.WebhookSecretOutputSerializer(secret).data)
