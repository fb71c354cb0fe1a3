"""How jobs and their results are shown: by the jobs API, the predict-as-job answer and webhooks."""

from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from apps.jobs import selectors
from apps.jobs.models import BatchJob, JobItem, WebhookDelivery


class JobOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="model_name")
    version = serializers.IntegerField(source="version_number")
    route = serializers.ChoiceField(
        choices=["primary", "canary"],
        allow_null=True,
        read_only=True,
        help_text="Why this version runs the job: the alias's rollout split, or null.",
    )
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
            "route",
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
        data["route"] = data["route"] or None  # null without a rollout, as the predict answer
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


class WebhookDeliveryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["attempt", "url", "event", "status_code", "succeeded", "error", "duration_ms", "created_at"]
