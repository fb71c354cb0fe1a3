import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdminMixin
from apps.optimization.models import EvaluationSet, OptimizationRun


@admin.register(EvaluationSet)
class EvaluationSetAdmin(admin.ModelAdmin):
    list_display = ["name", "model", "kind", "size_bytes", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "model__name"]
    readonly_fields = [
        "model",
        "name",
        "kind",
        "file",
        "sha256",
        "size_bytes",
        "summary",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploaded through the API, where they are checked


@admin.register(OptimizationRun)
class OptimizationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Runs and their reports: source and result side by side, and the accuracy gate."""

    list_display = [
        "id",
        "model",
        "source_version",
        "recipe",
        "status",
        "step",
        "progress",
        "gate",
        "created_at",
    ]
    list_filter = ["status", "recipe"]
    search_fields = ["id", "model__name"]
    readonly_fields = ["report_table"]

    @admin.display(description="gate")
    def gate(self, obj: OptimizationRun) -> str:
        gate = obj.report.get("gate")
        if not gate:
            return "-"
        return "passed" if gate.get("passed") else "failed"

    @admin.display(description="report")
    def report_table(self, obj: OptimizationRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.report, indent=2))
