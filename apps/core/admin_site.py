"""The maintainers' console: Django's admin site, named, with its sections in the order they
are used (the registry first) and links to the API docs and, when configured, Grafana."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.urls import reverse

# App labels in the order of daily use; any other app follows, alphabetically.
SECTION_ORDER = [
    "registry",
    "inference",
    "jobs",
    "rollouts",
    "optimization",
    "accounts",
    "oauth",
    "oauth2_provider",
    "auth",
    "token_blacklist",
]


class ConsoleSite(admin.AdminSite):
    site_header = "mlplatform console"
    site_title = "mlplatform console"
    index_title = "Models, predictions and jobs"
    index_template = "core/console_index.html"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        rank = {label: position for position, label in enumerate(SECTION_ORDER)}
        return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(rank)), app["name"]))

    def each_context(self, request: HttpRequest) -> dict:
        return {
            **super().each_context(request),
            "api_docs_url": reverse("swagger-ui"),
            "redoc_url": reverse("redoc"),
            "grafana_url": settings.GRAFANA_URL,
        }


class ConsoleAdminConfig(AdminConfig):
    """Installed instead of django.contrib.admin, so that `admin.site` is the console."""

    default_site = "apps.core.admin_site.ConsoleSite"
