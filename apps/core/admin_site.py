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
# Within a section, the pages in the order a maintainer goes through them; others follow.
PAGE_ORDER = [
    "MLModel",
    "ModelVersion",
    "ModelAlias",
    "ModelAliasHistory",
    "ModelGrant",
    "BatchJob",
    "JobItem",
]


class ConsoleSite(admin.AdminSite):
    site_header = "mlplatform console"
    site_title = "mlplatform console"
    index_title = "Models, predictions and jobs"
    index_template = "core/console_index.html"
    # The navigation sidebar takes 300 of a 1400 px screen from the lists' columns; the
    # index and the breadcrumbs lead everywhere it does.
    enable_nav_sidebar = False
    site_url = "/api/docs/"  # "View site": the site has no home page; its API docs are the public face

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        rank = {label: position for position, label in enumerate(SECTION_ORDER)}
        pages = {name: position for position, name in enumerate(PAGE_ORDER)}
        for app in apps:
            app["models"].sort(key=lambda page: (pages.get(page["object_name"], len(pages)), page["name"]))
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
