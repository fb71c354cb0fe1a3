"""The registry console's forms: each saves through the registry's services in clean(), so
that a refusal is a form error shown with what was typed, never a success message over a
dropped edit, and the admin's links and "Save and continue" get the row the service made."""

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.accounts.models import User
from apps.core.exceptions import ApplicationError
from apps.registry import services
from apps.registry.models import ModelAlias, ModelVersion


class VersionUploadForm(forms.ModelForm):
    """Add form: upload an .onnx file; the service checks, stores and enqueues validation."""

    file = forms.FileField(help_text="A self-contained .onnx file.")
    labels_file = forms.FileField(required=False, help_text="One label per line, or a JSON list.")
    preprocessing_json = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="Preprocessing config as JSON."
    )

    current_user: User | None  # set per request by the admin's get_form

    class Meta:
        model = ModelVersion
        fields = ["model", "notes"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (its stub allows None)
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

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (its stub allows None)
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
    details = exc.details
    parts = [
        f"{field}: {'; '.join(map(str, errors if isinstance(errors, list) else [errors]))}"
        for field, errors in details.items()
    ]
    return " ".join([exc.message, *parts])


class AliasForm(forms.ModelForm):
    """Set or move an alias through the service in clean(), so that the move is atomic,
    checked (a ready version, no rollout) and logged, a refusal is a form error, and the
    admin's links and "Save and continue" get the alias the service made."""

    current_user: User | None = None  # set per request by ModelAliasAdmin.get_form

    class Meta:
        model = ModelAlias
        fields = ["model", "name", "version"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = self.fields.get("version")
        if isinstance(versions, forms.ModelChoiceField):  # None on a form without the field
            # Only versions an alias may point at; on a change form, only this model's.
            ready = ModelVersion.objects.filter(status=ModelVersion.Status.READY).select_related("model")
            if self.instance.pk is not None:
                ready = ready.filter(model_id=self.instance.model_id)
            versions.queryset = ready

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (its stub allows None)
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
