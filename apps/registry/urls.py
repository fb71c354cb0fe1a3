from django.urls import path

from apps.registry.apis import aliases, grants, models, versions

app_name = "registry"

urlpatterns = [
    path("models/", models.ModelListCreateApi.as_view(), name="model-list"),
    path("models/<slug:name>/", models.ModelDetailApi.as_view(), name="model-detail"),
    path("models/<slug:name>/versions/", versions.VersionListCreateApi.as_view(), name="version-list"),
    path(
        "models/<slug:name>/versions/<int:number>/",
        versions.VersionDetailApi.as_view(),
        name="version-detail",
    ),
    path(
        "models/<slug:name>/versions/<int:number>/archive/",
        versions.VersionArchiveApi.as_view(),
        name="version-archive",
    ),
    path("models/<slug:name>/aliases/", aliases.AliasListApi.as_view(), name="alias-list"),
    path("models/<slug:name>/aliases/<slug:alias>/", aliases.AliasDetailApi.as_view(), name="alias-detail"),
    path("models/<slug:name>/alias-history/", aliases.AliasHistoryApi.as_view(), name="alias-history"),
    path("models/<slug:name>/grants/", grants.GrantListApi.as_view(), name="grant-list"),
    path("models/<slug:name>/grants/<str:username>/", grants.GrantDetailApi.as_view(), name="grant-detail"),
]
