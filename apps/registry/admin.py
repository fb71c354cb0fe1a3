"""Admin for maintainers: models, versions (with upload), aliases and their history."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.html import escape

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

    def get_deleted_objects(self, objs, request: HttpRequest) -> tuple:
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

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for model in queryset:
            services.model_delete(model=model)


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


class VersionEditForm(forms.ModelForm):
    """Change form: notes, labels and preprocessing, saved through the service in clean(), so
    labels that do not fit the classes or a bad config come back as a form error with what
    was typed, and nothing is saved (not a success message over a dropped edit)."""

    class Meta:
        model = ModelVersion
        fields = ["notes", "labels", "preprocessing"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        data = {name: cleaned[name] for name in self.Meta.fields if name in cleaned}
        try:
            # A copy: on refusal the instance the form re-renders keeps its stored values.
            version = ModelVersion.objects.select_related("model").get(pk=self.instance.pk)
            self.instance = services.model_version_update(version=version, data=data)
        except ApplicationError as exc:
            raise ValidationError(_error_text(exc)) from exc
        return cleaned


def _error_text(exc: ApplicationError) -> str:
    """The message, with a field-by-field detail when the service gave one."""
    details = exc.details if isinstance(exc.details, dict) else {}
    parts = [
        f"{field}: {'; '.join(map(str, errors if isinstance(errors, list) else [errors]))}"
        for field, errors in details.items()
    ]
    return " ".join([exc.message, *parts])


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
        return super().get_form(request, obj, form=VersionEditForm, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> list[str]:
        if obj is None:
            return ["model", "file", "labels_file", "preprocessing_json", "notes"]
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: forms.Form, change: bool) -> None:
        pass  # the add and edit forms' clean() saved through the service, or refused with a form error

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
    """Set or move an alias through the service in clean(), so that the move is atomic,
    checked (a ready version, no rollout) and logged, a refusal is a form error, and the
    admin's links and "Save and continue" get the alias the service made."""

    current_user = None  # set per request by ModelAliasAdmin.get_form

    class Meta:
        model = ModelAlias
        fields = ["model", "name", "version"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = self.fields.get("version")
        if versions is not None:
            # Only versions an alias may point at; on a change form, only this model's.
            ready = ModelVersion.objects.filter(status=ModelVersion.Status.READY).select_related("model")
            if self.instance.pk is not None:
                ready = ready.filter(model_id=self.instance.model_id)
            versions.queryset = ready

    def clean(self) -> dict:
        cleaned = super().clean()
        model = cleaned.get("model") or (self.instance.model if self.instance.pk else None)
        name = cleaned.get("name") or self.instance.name
        version = cleaned.get("version")
        if self.errors or model is None or version is None:
            return cleaned
        if version.model_id != model.pk:
            raise ValidationError("That version belongs to another model.")
        try:
            self.instance = services.alias_set(
                model=model, name=name, version=version, user=self.current_user
            )
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        return cleaned


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    form = AliasForm
    list_display = ["__str__", "version", "updated_by", "updated_at"]
    list_select_related = ["model", "version", "updated_by"]

    def get_form(self, request: HttpRequest, obj: ModelAlias | None = None, **kwargs: Any) -> type:
        form = super().get_form(request, obj, **kwargs)
        # A subclass per request: the user must not leak between concurrent requests.
        return type("AliasForm", (form,), {"current_user": request.user})

    def get_readonly_fields(self, request: HttpRequest, obj: ModelAlias | None = None) -> list[str]:
        # Renaming would silently create a second alias; delete and add instead.
        return ["model", "name"] if obj is not None else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"name": "production", **super().get_changeform_initial_data(request)}

    def save_model(self, request: HttpRequest, obj: ModelAlias, form: forms.Form, change: bool) -> None:
        pass  # AliasForm.clean() set the alias through the service

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
