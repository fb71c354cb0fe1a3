"""Admin: users with their limits and usage, API keys (create, edit, revoke), limits, usage."""

import re
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.accounts.models import ApiKey, QuotaUsage, User, UserLimits
from apps.accounts.services.api_keys import api_key_create, api_key_forget, api_key_revoke
from apps.core.exceptions import ApplicationError

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups  # the stubs' name for a fields list


class UserLimitsInline(admin.StackedInline):
    model = UserLimits
    can_delete = True
    extra = 0


class QuotaUsageInline(admin.TabularInline):
    model = QuotaUsage
    extra = 0
    readonly_fields = ["period", "used", "updated_at"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [UserLimitsInline, QuotaUsageInline]


class ApiKeyForm(forms.ModelForm):
    """Scopes from the known list only; on the add form the key is made by the service (the
    same rules as the API), whose secret the next page shows once."""

    scopes = forms.MultipleChoiceField(choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple)
    model_names = forms.CharField(
        required=False, help_text="Model names, comma-separated; blank: every model its owner may use."
    )
    created_key = ""  # the secret of a key made by this form, for the page shown after it

    class Meta:
        model = ApiKey
        fields = ["name", "owner", "scopes", "model_names", "rate_limit_per_minute", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["model_names"] = ", ".join(self.instance.model_names)

    def clean_scopes(self) -> list[str]:
        return sorted(set(self.cleaned_data["scopes"]))

    def clean_model_names(self) -> list[str]:
        return sorted({name for name in re.split(r"[\s,]+", self.cleaned_data["model_names"]) if name})

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (its stub allows None)
        if self.instance.pk is not None or self.errors:
            return cleaned
        try:
            created = api_key_create(
                owner=cleaned["owner"],
                name=cleaned["name"],
                scopes=cleaned["scopes"],
                model_names=cleaned["model_names"],
                expires_at=cleaned.get("expires_at"),
                rate_limit_per_minute=cleaned.get("rate_limit_per_minute"),
            )
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        self.instance, self.created_key = created.api_key, created.key
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "owner",
        "key_prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> "_FieldGroups":
        fields: _FieldGroups = [
            "name",
            "owner",
            "scopes",
            "model_names",
            "rate_limit_per_minute",
            "expires_at",
        ]
        return fields if obj is None else ["key_prefix", *fields, "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # The owner is fixed once a key exists: a key never moves to another user.
        return [] if obj is None else ["key_prefix", "owner", "created_at", "last_used_at", "revoked_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {
            "owner": request.user.pk,
            "scopes": [ApiKey.Scope.PREDICT],
            **super().get_changeform_initial_data(request),
        }

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.Form, change: bool) -> None:
        if change:
            obj.save()
            api_key_forget([obj.prefix])  # cached keys see new scopes and models at once
        # On add, ApiKeyForm.clean() made the key through the service.

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The secret, once: rendered into this answer only, never stored or redirected with."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": obj,
            "key": request.api_key_created,  # type: ignore[attr-defined]
            "title": "API key created",
        }
        return TemplateResponse(request, "admin/accounts/apikey/created.html", context)

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> ApiKey:
        request.api_key_created = form.created_key  # type: ignore[attr-defined]
        return super().save_form(request, form, change)

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"mlp_{obj.prefix}_…"

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", level=messages.SUCCESS)


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "plan",
        "predict_rate",
        "jobs_rate",
        "registry_write_rate",
        "monthly_prediction_quota",
    ]
    search_fields = ["user__username", "plan"]


@admin.register(QuotaUsage)
class QuotaUsageAdmin(admin.ModelAdmin):
    list_display = ["user", "period", "used", "updated_at"]
    list_filter = ["period"]
    search_fields = ["user__username"]
    readonly_fields = ["user", "period", "used", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
