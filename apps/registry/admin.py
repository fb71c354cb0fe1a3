"""Admin for maintainers: models, versions (with upload), aliases and their history."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError
from apps.registry import services
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelGrant, ModelVersion


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 0
    fields = ["name", "version", "updated_by", "updated_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # aliases move through the alias admin, which logs history


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "visibility", "owner", "created_at"]
    list_filter = ["task", "visibility"]
    search_fields = ["name", "description"]
    readonly_fields = ["next_version_number", "created_at", "updated_at"]
    inlines = [ModelAliasInline]


class VersionUploadForm(forms.ModelForm):
    """Add form: upload an .onnx file; the service checks, stores and enqueues validation."""

    file = forms.FileField(help_text="A self-contained .onnx file.")
    labels_file = forms.FileField(required=False, help_text="One label per line, or a JSON list.")
    preprocessing_json = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="Preprocessing config as JSON."
    )

    class Meta:
        model = ModelVersion
        fields = ["model", "notes"]

    def clean(self) -> dict:
        cleaned = super().clean()
        try:
            labels = cleaned.get("labels_file")
            self.instance = services.model_version_create(
                model=cleaned["model"],
                file=cleaned["file"],
                created_by=self.current_user,
                labels=labels.read() if labels else None,
                preprocessing=cleaned.get("preprocessing_json") or None,
                notes=cleaned.get("notes", ""),
            )
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        except KeyError:
            pass  # a required field is missing; its own error is shown
        return cleaned


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "size_bytes", "created_by", "created_at", "validated_at"]
    list_filter = ["status", "model"]
    search_fields = ["model__name", "sha256", "notes"]
    list_select_related = ["model", "created_by"]
    readonly_fields = [
        "model",
        "number",
        "artifact_name",
        "sha256",
        "size_bytes",
        "status",
        "status_reason",
        "failure_code",
        "signature_pretty",
        "metrics_pretty",
        "derived_from",
        "optimization_pretty",
        "created_by",
        "validation_attempts",
        "validated_at",
        "archived_at",
        "created_at",
        "updated_at",
    ]
    fields = [*readonly_fields[:6], "notes", "labels", "preprocessing", *readonly_fields[6:]]
    actions = ["archive"]

    def get_form(self, request: HttpRequest, obj: ModelVersion | None = None, **kwargs: Any) -> type:
        if obj is None:
            # A subclass per request: the uploader must not leak between concurrent requests.
            return type("VersionUploadForm", (VersionUploadForm,), {"current_user": request.user})
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> list[str]:
        if obj is None:
            return ["model", "file", "labels_file", "preprocessing_json", "notes"]
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: forms.Form, change: bool) -> None:
        if change:
            data = {"notes": obj.notes, "labels": obj.labels, "preprocessing": obj.preprocessing}
            try:
                services.model_version_update(version=obj, data=data)
            except ApplicationError as exc:  # e.g. labels that do not fit the classes: nothing is saved
                self.message_user(request, f"Not saved: {exc.message}", level=messages.ERROR)
        # On add, the upload form's clean() already created the version through the service.

    @admin.display(description="artifact")
    def artifact_name(self, obj: ModelVersion) -> str:
        return obj.artifact.name  # stored under MODEL_STORE_ROOT; never served over HTTP

    @admin.display(description="signature")
    def signature_pretty(self, obj: ModelVersion) -> str:
        return json.dumps(obj.signature, indent=2)

    @admin.display(description="metrics")
    def metrics_pretty(self, obj: ModelVersion) -> str:
        return json.dumps(obj.metrics, indent=2)

    @admin.display(description="optimization report")
    def optimization_pretty(self, obj: ModelVersion) -> str:
        return json.dumps(obj.optimization, indent=2)

    @admin.action(description="Archive selected versions")
    def archive(self, request: HttpRequest, queryset) -> None:
        for version in queryset:
            try:
                services.model_version_archive(version=version)
            except ApplicationError as exc:
                self.message_user(request, f"{version}: {exc.message}", level=messages.ERROR)


class AliasForm(forms.ModelForm):
    class Meta:
        model = ModelAlias
        fields = ["model", "name", "version"]

    def clean(self) -> dict:
        cleaned = super().clean()
        model, version = cleaned.get("model"), cleaned.get("version")
        if model and version and version.model_id != model.pk:
            raise ValidationError("That version belongs to another model.")
        if version and version.status != ModelVersion.Status.READY:
            raise ValidationError(f"Version {version.number} is {version.status}; pick a ready version.")
        return cleaned


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    form = AliasForm
    list_display = ["__str__", "version", "updated_by", "updated_at"]
    list_select_related = ["model", "version", "updated_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: ModelAlias | None = None) -> list[str]:
        # Renaming would silently create a second alias; delete and add instead.
        return ["model", "name"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: ModelAlias, form: forms.Form, change: bool) -> None:
        # Through the service, so the move is atomic, checked (ready version) and logged.
        try:
            services.alias_set(model=obj.model, name=obj.name, version=obj.version, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_model(self, request: HttpRequest, obj: ModelAlias) -> None:
        services.alias_delete(alias=obj, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for alias in queryset:
            services.alias_delete(alias=alias, user=request.user)


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
