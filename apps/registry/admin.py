"""Admin for maintainers: models (the page they work from), versions (with upload), aliases
and their history, grants. Forms in admin_forms.py, the model page in admin_pages.py."""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import escape, format_html

from apps.accounts.authenticated import request_user
from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError
from apps.registry import admin_pages, services
from apps.registry.admin_forms import AliasForm, VersionEditForm, VersionUploadForm
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelGrant, ModelVersion

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups  # the stubs' name for a fields list


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 0
    # A tuple: the stubs type `fields` and `readonly_fields` differently, and only a tuple is both.
    readonly_fields = ("name", "version", "updated_by", "updated_at")
    fields = readonly_fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # aliases move from a version's row or the alias admin, which log history


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    """The page a maintainer works from: versions, aliases, history (admin_pages.py)."""

    list_display = ["name", "task", "visibility", "production", "versions_count", "owner", "created_at"]
    list_filter = ["task", "visibility"]
    search_fields = ["name", "description"]
    list_select_related = ["owner"]
    readonly_fields = ["next_version_number", "created_at", "updated_at", "rollouts"]
    inlines = [ModelAliasInline]

    @admin.display(description="rollouts")
    def rollouts(self, obj: MLModel) -> str:
        """A link to the model's rollouts (their comparison is on each rollout's page)."""
        if obj.pk is None:  # the add form's unsaved row (the stubs type pk as never None)
            return "-"  # type: ignore[unreachable]
        url = reverse("admin:rollouts_rollout_changelist") + f"?model__id__exact={obj.pk}"
        active = obj.rollouts.filter(status="active").values_list("pk", flat=True).first()
        return format_html('<a href="{}">{}</a>', url, f"active: #{active}" if active else "all rollouts")

    def get_queryset(self, request: HttpRequest) -> QuerySet[MLModel]:
        production = ModelAlias.objects.filter(model=OuterRef("pk"), name="production")
        return (
            super()
            .get_queryset(request)
            .annotate(
                production_number=Subquery(production.values("version__number")[:1]),
                versions_total=Count("versions"),
            )
        )

    @admin.display(description="production", ordering="production_number")
    def production(self, obj: MLModel) -> str:
        # Both counts come from get_queryset's annotate(), which the stubs cannot follow.
        return f"v{obj.production_number}" if obj.production_number else "-"  # type: ignore[attr-defined]

    @admin.display(description="versions", ordering="versions_total")
    def versions_count(self, obj: MLModel) -> int:
        return obj.versions_total  # type: ignore[attr-defined]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    def get_urls(self) -> list[URLPattern]:
        def guarded(view: Callable[[HttpRequest, int], HttpResponse], permission: str) -> Callable[..., Any]:
            def wrapper(request: HttpRequest, model_id: int) -> HttpResponse:
                if not request.user.has_perm(permission):
                    raise PermissionDenied
                return view(request, model_id)

            return self.admin_site.admin_view(wrapper)

        urls = [
            path(
                "<int:model_id>/versions.json",
                guarded(admin_pages.versions_json, "registry.view_modelversion"),
                name="registry_mlmodel_versions",
            ),
            path(
                "<int:model_id>/set-alias/",
                guarded(admin_pages.set_alias, "registry.change_modelalias"),
                name="registry_mlmodel_set_alias",
            ),
            path(
                "<int:model_id>/archive/",
                guarded(admin_pages.archive_version, "registry.change_modelversion"),
                name="registry_mlmodel_archive",
            ),
        ]
        return urls + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        model = self.get_object(request, object_id)
        if model is not None:
            extra_context = {**(extra_context or {}), **admin_pages.model_page_context(request, model)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_deleted_objects(
        self, objs: Sequence[MLModel] | QuerySet[MLModel], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The alias history is append-only in the admin, but it is the model's own record and
        # goes with it; the aliases protect their versions from a stray delete, but
        # services.model_delete removes them first. Without this no one, not even a
        # superuser, could delete a model that ever had an alias.
        perms_needed.discard(ModelAliasHistory._meta.verbose_name)
        # The admin lists protected rows as formatted links ("Model alias: <a …>m@production</a>").
        ours = {f">{escape(alias)}</a>" for alias in ModelAlias.objects.filter(model__in=objs)}
        protected = [entry for entry in protected if not any(str(entry).endswith(end) for end in ours)]
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: MLModel) -> None:
        services.model_delete(model=obj)  # aliases first, files after the commit

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MLModel]) -> None:
        for model in queryset:
            services.model_delete(model=model)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status_badge", "size", "p50", "failure", "created_by", "created_at"]
    list_filter = ["status", "model"]
    search_fields = ["model__name", "sha256", "notes"]
    list_select_related = ["model", "created_by"]
    readonly_fields = [
        "model_link",
        "number",
        "status_badge",
        "failure",
        "size",
        "origin",
        "traffic",
        "artifact_name",
        "sha256",
        "signature_table",
        "metrics_table",
        "optimization_table",
        "created_by",
        "validation_attempts",
        "validated_at",
        "archived_at",
        "created_at",
        "updated_at",
    ]
    fields = [*readonly_fields[:7], "notes", "labels", "preprocessing", *readonly_fields[7:]]
    actions = ["archive"]

    class Media:
        css = {"all": ["registry/console.css"]}

    def get_form(
        self, request: HttpRequest, obj: ModelVersion | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if obj is None:
            # A subclass per request: the uploader must not leak between concurrent requests.
            form = type("VersionUploadForm", (VersionUploadForm,), {"current_user": request.user})
            return cast("type[forms.ModelForm]", form)
        return super().get_form(request, obj, change, form=VersionEditForm, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> "_FieldGroups":
        if obj is None:
            return ["model", "file", "labels_file", "preprocessing_json", "notes"]
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: forms.Form, change: bool) -> None:
        pass  # the add and edit forms' clean() saved through the service, or refused with a form error

    def response_add(
        self, request: HttpRequest, obj: ModelVersion, post_url_continue: str | None = None
    ) -> HttpResponse:
        if "_addanother" in request.POST or "_continue" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # To the model's page, where the new version's status refreshes while it validates.
        self.message_user(request, f"Version {obj.number} uploaded; it is validated on a worker.")
        return HttpResponseRedirect(reverse("admin:registry_mlmodel_change", args=[obj.model_id]))

    @admin.display(description="model")
    def model_link(self, obj: ModelVersion) -> str:
        url = reverse("admin:registry_mlmodel_change", args=[obj.model_id])
        return format_html('<a href="{}">{}</a>', url, obj.model.name)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ModelVersion) -> str:
        return admin_pages.status_badge(obj)

    @admin.display(description="failure")
    def failure(self, obj: ModelVersion) -> str:
        if obj.status != ModelVersion.Status.FAILED:
            return ""
        return f"{obj.failure_code}: {obj.status_reason}" if obj.failure_code else obj.status_reason

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: ModelVersion) -> str:
        return admin_pages.size_text(obj.size_bytes)

    @admin.display(description="p50")
    def p50(self, obj: ModelVersion) -> str:
        return admin_pages.p50_text(obj)

    @admin.display(description="derived / converted from")
    def origin(self, obj: ModelVersion) -> str:
        return admin_pages.origin_text(obj) or "-"

    @admin.display(description="traffic")
    def traffic(self, obj: ModelVersion) -> str:
        query = f"?model_name={obj.model.name}&version_number={obj.number}"
        return format_html(
            '<a href="{}">predictions</a> · <a href="{}">jobs</a>',
            reverse("admin:inference_prediction_changelist") + query,
            reverse("admin:jobs_batchjob_changelist") + query,
        )

    @admin.display(description="artifact")
    def artifact_name(self, obj: ModelVersion) -> str | None:
        return obj.artifact.name  # stored under MODEL_STORE_ROOT; never served over HTTP

    @admin.display(description="signature")
    def signature_table(self, obj: ModelVersion) -> str:
        return admin_pages.signature_table(obj.signature)

    @admin.display(description="metrics")
    def metrics_table(self, obj: ModelVersion) -> str:
        return admin_pages.metrics_table(obj.metrics)

    @admin.display(description="optimization report")
    def optimization_table(self, obj: ModelVersion) -> str:
        return admin_pages.metrics_table(obj.optimization)

    @admin.action(description="Archive selected versions")
    def archive(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                services.model_version_archive(version=version)
            except ApplicationError as exc:
                self.message_user(request, f"{version}: {exc.message}", level=messages.ERROR)


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    form = AliasForm
    list_display = ["__str__", "version", "updated_by", "updated_at"]
    list_select_related = ["model", "version", "updated_by"]

    def get_form(
        self, request: HttpRequest, obj: ModelAlias | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        # A subclass per request: the user must not leak between concurrent requests.
        return cast("type[forms.ModelForm]", type("AliasForm", (form,), {"current_user": request.user}))

    def get_readonly_fields(self, request: HttpRequest, obj: ModelAlias | None = None) -> list[str]:
        # Renaming would silently create a second alias; delete and add instead.
        return ["model", "name"] if obj is not None else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"name": "production", **super().get_changeform_initial_data(request)}

    def save_model(self, request: HttpRequest, obj: ModelAlias, form: forms.Form, change: bool) -> None:
        pass  # AliasForm.clean() set the alias through the service

    def delete_model(self, request: HttpRequest, obj: ModelAlias) -> None:
        services.alias_delete(alias=obj, user=request_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelAlias]) -> None:
        for alias in queryset:
            services.alias_delete(alias=alias, user=request_user(request))


@admin.register(ModelAliasHistory)
class ModelAliasHistoryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["model", "alias_name", "action", "from_number", "to_number", "changed_by", "changed_at"]
    list_filter = ["action", "model"]


@admin.register(ModelGrant)
class ModelGrantAdmin(admin.ModelAdmin):
    list_display = ["model", "user", "role", "granted_by", "created_at"]
    list_filter = ["role"]
    search_fields = ["model__name", "user__username"]
    list_select_related = ["model", "user", "granted_by"]
