"""Admin: rollouts with their candidates, read-mostly. They start by the API (which checks
the candidates); here an admin sees them, with each version's request count and statistics,
the shadow's agreement with the primary, and aborts."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from apps.accounts.authenticated import request_user
from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError
from apps.rollouts import pairing, selectors, services
from apps.rollouts.models import Rollout, RolloutCandidate


class RolloutCandidateInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RolloutCandidate
    extra = 0
    # Tuples: the stubs type `fields` and `readonly_fields` differently, and only a tuple is both.
    readonly_fields = ("version", "weight")
    fields = readonly_fields


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id", "model", "alias_name", "primary", "shadow", "status", "created_by", "created_at", "ended_at",
    ]  # fmt: skip
    list_filter = ["status", "model"]
    search_fields = ["model__name", "alias_name"]
    list_select_related = ["model", "primary", "shadow", "created_by"]
    readonly_fields = (
        "model",
        "alias_name",
        "primary",
        "status",
        "reason",
        "promoted_to",
        "max_error_rate",
        "max_latency_p95_ms",
        "min_requests",
        "shadow",
        "shadow_percent",
        "max_shadow_disagreement",
        "shadow_min_pairs",
        "shadow_stopped_at",
        "shadow_reason",
        "shadow_dropped",
        "requests",
        "comparison",
        "created_by",
        "created_at",
        "ended_by",
        "ended_at",
    )
    fields = readonly_fields
    inlines = [RolloutCandidateInline]
    actions = ["abort"]

    @admin.display(description="requests per version")
    def requests(self, obj: Rollout) -> str:
        counts = selectors.request_counts(obj)
        return ", ".join(f"v{number}: {n}" for number, n in sorted(counts.items())) or "none yet"

    @admin.display(description="comparison (latest rows of the rollout)")
    def comparison(self, obj: Rollout) -> str:
        lines = [
            f"v{s.version} {s.route}: {s.requests} requests, error rate {s.error_rate:.3f}, "
            f"p50 {s.latency_p50_ms} ms, p95 {s.latency_p95_ms} ms, top-1 {s.top1}"
            for s in selectors.comparison(obj, since=None, until=None)
        ]
        if obj.shadow is not None:
            pairs = pairing.paired_stats(obj)
            lines.append(
                f"shadow v{obj.shadow.number} vs primary: {pairs.comparable} pairs, top-1 agreement "
                f"{pairs.agreement}, mean |score diff| {pairs.mean_abs_score_diff}, "
                f"{obj.shadow_dropped} dropped"
            )
        return format_html_join("\n", "<div>{}</div>", ((line,) for line in lines))

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Abort selected rollouts (the alias stays on the primary)")
    def abort(self, request: HttpRequest, queryset: QuerySet[Rollout]) -> None:
        for rollout in queryset:
            try:
                services.rollout_abort(
                    rollout=rollout, user=request_user(request), reason="aborted in the admin"
                )
            except ApplicationError as exc:
                self.message_user(request, f"{rollout}: {exc.message}", level=messages.ERROR)
