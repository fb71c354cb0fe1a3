from django.urls import path

from apps.inference import apis, audit_apis

app_name = "inference"

urlpatterns = [
    path("models/<slug:name>/predict", apis.PredictApi.as_view(), name="predict"),
    path("predictions/", audit_apis.PredictionListApi.as_view(), name="prediction-list"),
]
