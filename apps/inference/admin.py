from django.contrib import admin
from django.http import HttpRequest

from apps.inference.models import Prediction


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    """The audit trail: browsable and filterable, never edited."""

    list_display = [
        "id",
        "created_at",
        "user",
        "model_name",
        "version_number",
        "alias",
        "source",
        "status",
        "error_code",
        "latency_ms",
        "request_id",
    ]
    list_filter = ["status", "source", "model_name", "error_code", "created_at"]
    search_fields = ["request_id", "input_sha256", "user__username", "model_name"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    show_full_result_count = False  # counting a large audit table on every page is slow

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
