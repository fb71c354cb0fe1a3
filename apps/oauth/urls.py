"""Managing OAuth applications: /api/v1/oauth/applications/…"""

from django.urls import path

from apps.oauth import apis

app_name = "oauth"

urlpatterns = [
    path("oauth/applications/", apis.ApplicationListCreateApi.as_view(), name="application-list"),
    path("oauth/applications/<int:application_id>/", apis.ApplicationDetailApi.as_view(), name="application"),
    path(
        "oauth/applications/<int:application_id>/secret/",
        apis.ApplicationSecretApi.as_view(),
        name="application-secret",
    ),
    path(
        "oauth/applications/<int:application_id>/tokens/",
        apis.TokenListApi.as_view(),
        name="application-tokens",
    ),
    path(
        "oauth/applications/<int:application_id>/tokens/<int:token_id>/",
        apis.TokenDetailApi.as_view(),
        name="application-token",
    ),
]
