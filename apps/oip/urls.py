from django.urls import path, re_path

from apps.oip import apis

app_name = "oip"

# A version is a number or an alias name; the model routes repeat with and without it.
MODEL = r"^models/(?P<name>[-a-zA-Z0-9_]+)(?:/versions/(?P<version>[^/]+))?"

# GET /v2 itself (server metadata) is in mlplatform/urls.py: clients ask for it without a slash.
urlpatterns = [
    path("health/live", apis.ServerLiveApi.as_view(), name="live"),
    path("health/ready", apis.ServerReadyApi.as_view(), name="ready"),
    re_path(MODEL + r"$", apis.ModelMetadataApi.as_view(), name="model-metadata"),
    re_path(MODEL + r"/ready$", apis.ModelReadyApi.as_view(), name="model-ready"),
    re_path(MODEL + r"/infer$", apis.ModelInferApi.as_view(), name="model-infer"),
    path("repository/index", apis.RepositoryIndexApi.as_view(), name="repository-index"),
    re_path(
        r"^repository/models/(?P<name>[-a-zA-Z0-9_]+)/(?P<action>load|unload)$",
        apis.RepositoryLoadApi.as_view(),
        name="repository-model",
    ),
]
