from django.urls import path

from apps.accounts import apis

app_name = "accounts"

urlpatterns = [
    path("auth/token/", apis.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", apis.TokenRefreshApi.as_view(), name="token-refresh"),
    path("auth/token/verify/", apis.TokenVerifyApi.as_view(), name="token-verify"),
    path("api-keys/", apis.ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("api-keys/<int:key_id>/", apis.ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("me/usage/", apis.MeUsageApi.as_view(), name="me-usage"),
]
