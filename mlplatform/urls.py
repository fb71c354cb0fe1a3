from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerOauthRedirectView,
    SpectacularSwaggerView,
)

from apps.core import views as core_views
from apps.oauth import views as oauth_views
from apps.oip import apis as oip_apis

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("apps.accounts.urls")),
    path("api/v1/", include("apps.registry.urls")),
    path("api/v1/", include("apps.inference.urls")),
    path("api/v1/", include("apps.jobs.urls")),
    path("api/v1/", include("apps.optimization.urls")),
    path("api/v1/", include("apps.oauth.urls")),
    path("api/v1/", include("apps.rollouts.urls")),
    # OAuth 2.0: the authorization server's endpoints, and the login page of ordinary users
    path("", include("apps.oauth.endpoints")),
    path("login/", oauth_views.LoginView.as_view(), name="login"),
    path("logout/", oauth_views.LogoutView.as_view(), name="logout"),
    path("v2/", include("apps.oip.urls")),
    path("v2", oip_apis.ServerMetadataApi.as_view(), name="v2-server-metadata"),  # as clients ask: no slash
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Swagger UI's OAuth 2.0 redirect (register it as a redirect URI of an application)
    path(
        "api/docs/oauth2-redirect.html",
        SpectacularSwaggerOauthRedirectView.as_view(),
        name="swagger-oauth-redirect",
    ),
    # ReDoc without the web fonts drf-spectacular's template loads from Google: fully offline.
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="core/redoc.html"),
        name="redoc",
    ),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
]

handler400 = "apps.core.exception_handler.handler400"
handler403 = "apps.core.exception_handler.handler403"
handler404 = "apps.core.exception_handler.handler404"
handler500 = "apps.core.exception_handler.handler500"
