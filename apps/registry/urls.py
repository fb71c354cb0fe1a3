from django.urls import path

from apps.registry import apis

app_name = "registry"

urlpatterns = [
    path("models/", apis.ModelListCreateApi.as_view(), name="model-list"),
    path("models/<slug:name>/", apis.ModelDetailApi.as_view(), name="model-detail"),
    path("models/<slug:name>/versions/", apis.VersionListCreateApi.as_view(), name="version-list"),
    path("models/<slug:name>/versions/<int:number>/", apis.VersionDetailApi.as_view(), name="version-detail"),
    path(
        "models/<slug:name>/versions/<int:number>/archive/",
        apis.VersionArchiveApi.as_view(),
        name="version-archive",
    ),
    path("models/<slug:name>/aliases/", apis.AliasListApi.as_view(), name="alias-list"),
    path("models/<slug:name>/aliases/<slug:alias>/", apis.AliasDetailApi.as_view(), name="alias-detail"),
    path("models/<slug:name>/alias-history/", apis.AliasHistoryApi.as_view(), name="alias-history"),
    path("models/<slug:name>/grants/", apis.GrantListApi.as_view(), name="grant-list"),
    path("models/<slug:name>/grants/<str:username>/", apis.GrantDetailApi.as_view(), name="grant-detail"),
]
