"""Admin: rollouts with their candidates, read-mostly. They start by the API (which checks
the candidates); here an admin sees them, with each version's request count, and aborts."""

from django.contrib import admin, messages
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError
from apps.rollouts import selectors, services
from apps.rollouts.models import Rollout, RolloutCandidate


class RolloutCandidateInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RolloutCandidate
    extra = 0
    fields = ["version", "weight"]
    readonly_fields = fields


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "model", "alias_name", "primary", "status", "created_by", "created_at", "ended_at"]
    list_filter = ["status"]
    search_fields = ["model__name", "alias_name"]
    list_select_related = ["model", "primary", "created_by"]
    readonly_fields = [
        "model",
        "alias_name",
        "primary",
        "status",
        "reason",
        "promoted_to",
        "max_error_rate",
        "max_latency_p95_ms",
        "min_requests",
        "requests",
        "created_by",
        "created_at",
        "ended_by",
        "ended_at",
    ]
    fields = readonly_fields
    inlines = [RolloutCandidateInline]
    actions = ["abort"]

    @admin.display(description="requests per version")
    def requests(self, obj: Rollout) -> str:
        counts = selectors.request_counts(obj)
        return ", ".join(f"v{number}: {n}" for number, n in sorted(counts.items())) or "none yet"

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Abort selected rollouts (the alias stays on the primary)")
    def abort(self, request: HttpRequest, queryset) -> None:
        for rollout in queryset:
            try:
                services.rollout_abort(rollout=rollout, user=request.user, reason="aborted in the admin")
            except ApplicationError as exc:
                self.message_user(request, f"{rollout}: {exc.message}", level=messages.ERROR)
