from django.urls import path

from apps.optimization import apis

app_name = "optimization"

urlpatterns = [
    path("models/<slug:name>/evaluation-sets/", apis.EvaluationSetListApi.as_view(), name="evaluation-sets"),
    path(
        "models/<slug:name>/evaluation-sets/<slug:set_name>/",
        apis.EvaluationSetDetailApi.as_view(),
        name="evaluation-set-detail",
    ),
    path("models/<slug:name>/versions/<int:number>/optimize", apis.OptimizeApi.as_view(), name="optimize"),
    path("models/<slug:name>/optimizations/", apis.ModelOptimizationListApi.as_view(), name="optimizations"),
    path("optimizations/<uuid:run_id>/", apis.OptimizationDetailApi.as_view(), name="optimization-detail"),
]
