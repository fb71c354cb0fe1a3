from django.urls import path

from apps.rollouts import apis

app_name = "rollouts"

urlpatterns = [
    path("models/<slug:name>/rollouts/", apis.RolloutListStartApi.as_view(), name="rollout-list"),
    path(
        "models/<slug:name>/rollouts/<int:rollout_id>/",
        apis.RolloutDetailApi.as_view(),
        name="rollout-detail",
    ),
    path(
        "models/<slug:name>/rollouts/<int:rollout_id>/promote",
        apis.RolloutPromoteApi.as_view(),
        name="rollout-promote",
    ),
    path(
        "models/<slug:name>/rollouts/<int:rollout_id>/abort",
        apis.RolloutAbortApi.as_view(),
        name="rollout-abort",
    ),
    path(
        "models/<slug:name>/rollouts/<int:rollout_id>/comparison",
        apis.RolloutComparisonApi.as_view(),
        name="rollout-comparison",
    ),
]
