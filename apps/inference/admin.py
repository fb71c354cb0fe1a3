from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin
from apps.inference.models import Prediction


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
    list_filter = ["status", "source", "model_name", "version_number", "error_code", "created_at"]
    # A user's name finds their rows; the changelist's ?user__id__exact=N filters by id.
    search_fields = ["request_id", "input_sha256", "user__username", "model_name"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    show_full_result_count = False  # counting a large audit table on every page is slow
