"""Admin: users with their limits and usage, API keys (revoke), limits, usage."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts import services
from apps.accounts.models import ApiKey, QuotaUsage, User, UserLimits


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
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
    # Keys are created through the API or `manage.py create_api_key`, which show the secret once.
    readonly_fields = ["owner", "prefix", "digest", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"mlp_{obj.prefix}_…"

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
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
