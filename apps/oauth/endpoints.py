"""The authorization server's endpoints, in the toolkit's URL namespace (`oauth2_provider`),
which its metadata view reverses: /oauth/authorize/, /oauth/token/, /oauth/revoke/,
/oauth/introspect/ and /.well-known/oauth-authorization-server (RFC 8414)."""

from django.urls import path
from oauth2_provider import views as dot_views

from apps.oauth import views

app_name = "oauth2_provider"

urlpatterns = [
    path("oauth/authorize/", views.AuthorizationView.as_view(), name="authorize"),
    path("oauth/token/", views.TokenView.as_view(), name="token"),
    path("oauth/revoke/", views.RevokeTokenView.as_view(), name="revoke-token"),
    path("oauth/introspect/", views.IntrospectView.as_view(), name="introspect"),
    path(
        ".well-known/oauth-authorization-server",
        dot_views.OAuthServerMetadataView.as_view(),
        name="oauth-server-metadata",
    ),
]
