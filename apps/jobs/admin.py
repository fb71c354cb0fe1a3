from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError
from apps.jobs import selectors
from apps.jobs.models import BatchJob, JobItem, WebhookDelivery
from apps.jobs.services import job_cancel, job_retry


class WebhookDeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookDelivery
    # A tuple: the stubs type `fields` and `readonly_fields` differently, and only a tuple is both.
    readonly_fields = ("attempt", "url", "status_code", "succeeded", "error", "duration_ms", "created_at")
    fields = readonly_fields
    max_num = 0


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    """Jobs with their progress and items; cancel and retry as actions."""

    # Status and progress right after the job, so they stay on screen at 1400 px.
    list_display = [
        "id",
        "status_badge",
        "progress_bar",
        "model_name",
        "version_number",
        "created_at",
        "owner",
        "attempts",
    ]
    list_filter = ["status", "model_name", "created_at"]
    search_fields = ["id", "owner__username", "model_name", "idempotency_key", "request_id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    actions = ["cancel_jobs", "retry_jobs"]
    inlines = [WebhookDeliveryInline]
    readonly_fields = ["status_badge", "progress_bar", "throughput", "items_link"] + [
        f.name for f in BatchJob._meta.fields
    ]

    class Media:
        css = {"all": ["registry/console.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come through the API

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Viewable (by users with the view or change permission), never edited: the page is
        # read-only, with no Save that would be refused. Cancel and retry are list actions.
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: BatchJob) -> str:
        """A job that finished with failed items does not read as a plain success."""
        css = obj.status
        text = obj.status
        if obj.failed_items:
            text = f"{obj.status} · {obj.failed_items} failed"
            css = "partial" if obj.status == BatchJob.Status.SUCCEEDED else obj.status
        return format_html('<span class="mlp-status mlp-status-{}">{}</span>', css, text)

    @admin.display(description="progress")
    def progress_bar(self, obj: BatchJob) -> str:
        progress = selectors.job_progress(obj)
        return format_html(
            '<progress max="{}" value="{}"></progress> {} / {} ({}%)',
            obj.total or 1,
            obj.done,
            obj.done,
            obj.total,
            progress["percent"],
        )

    @admin.display(description="items")
    def items_link(self, obj: BatchJob) -> str:
        url = reverse("admin:jobs_jobitem_changelist")
        items = f"{url}?job__id__exact={obj.pk}"
        return format_html(
            '<a href="{}">all {} items</a> · <a href="{}&status__exact=failed">{} failed</a>',
            items,
            obj.total,
            items,
            obj.failed_items,
        )

    @admin.display(description="items/s, ETA")
    def throughput(self, obj: BatchJob) -> str:
        progress = selectors.job_progress(obj)
        return f"{progress['items_per_second'] or '-'} items/s, ETA {progress['eta_seconds'] or '-'} s"

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[BatchJob]) -> None:
        self._each(request, queryset, job_cancel, "cancelled or asked to stop")

    @admin.action(description="Retry the selected jobs (failed and unprocessed items)")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[BatchJob]) -> None:
        self._each(request, queryset, job_retry, "queued again")

    def _each(self, request: HttpRequest, queryset: QuerySet[BatchJob], action: object, done: str) -> None:
        count = 0
        for job in queryset:
            try:
                action(job=job)  # type: ignore[operator]
                count += 1
            except ApplicationError as exc:
                self.message_user(request, f"Job {job.pk}: {exc.message}", messages.WARNING)
        if count:
            self.message_user(request, f"{count} job(s) {done}.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["job", "attempt", "url", "status_code", "succeeded", "created_at"]
    list_filter = ["succeeded", "created_at"]
    search_fields = ["job__id", "url"]


@admin.register(JobItem)
class JobItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A job's items (reached from the job page), filterable by status."""

    list_display = ["job", "index", "filename", "status", "error_code", "finished_at"]
    list_filter = ["status", "error_code"]
    search_fields = ["job__id", "filename", "input_sha256"]
    list_select_related = ["job"]
    ordering = ["job", "index"]
    show_full_result_count = False
