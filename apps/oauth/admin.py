"""Admin for OAuth applications. django-oauth-toolkit registers its models itself, with this
class for applications (OAUTH2_PROVIDER["APPLICATION_ADMIN_CLASS"]) and its own for tokens,
grants and refresh tokens, which mask the stored values. This module must not import the
toolkit's admin module, which imports this one by name."""

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.oauth import services
from apps.oauth.models import Application

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups  # the stubs' name for a fields list


class ApplicationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "client_id",
        "user",
        "authorization_grant_type",
        "client_type",
        "scopes",
        "model_names",
        "disabled_at",
        "tokens",
        "created",
    ]
    list_filter = ["authorization_grant_type", "client_type", ("disabled_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "client_id", "user__username"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    radio_fields = {"client_type": admin.HORIZONTAL, "authorization_grant_type": admin.VERTICAL}
    actions = ["disable", "enable", "revoke_tokens"]

    def get_fields(self, request: HttpRequest, obj: Application | None = None) -> "_FieldGroups":
        fields: _FieldGroups = [
            "name",
            "user",
            "authorization_grant_type",
            "client_type",
            "redirect_uris",
            "scopes",
            "model_names",
            "skip_authorization",
        ]
        # On the add form the generated secret is shown once, to be copied before saving; it
        # is stored as a digest, so the change form has nothing to show.
        return [*fields, "client_secret"] if obj is None else ["client_id", *fields, "disabled_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Application | None = None) -> list[str]:
        return ["client_id", "disabled_at"] if obj is not None else []

    def get_form(
        self, request: HttpRequest, obj: Application | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is None:
            form.base_fields[
                "client_secret"
            ].help_text = "Copy this secret now: it is stored as a digest and cannot be shown again."
        return form

    @admin.display(description="tokens")
    def tokens(self, obj: Application) -> str:
        url = reverse("admin:oauth2_provider_accesstoken_changelist") + f"?application__id__exact={obj.pk}"
        return format_html('<a href="{}">access tokens</a>', url)

    @admin.action(description="Disable selected applications (their tokens stop working)")
    def disable(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        for application in queryset:
            services.application_update(application=application, disabled=True)
        self.message_user(request, f"Disabled {queryset.count()} application(s).", level=messages.SUCCESS)

    @admin.action(description="Enable selected applications")
    def enable(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        for application in queryset:
            services.application_update(application=application, disabled=False)
        self.message_user(request, f"Enabled {queryset.count()} application(s).", level=messages.SUCCESS)

    @admin.action(description="Revoke every token of selected applications")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        revoked = sum(services.application_revoke_tokens(application=app) for app in queryset)
        self.message_user(request, f"Revoked {revoked} access token(s).", level=messages.SUCCESS)
