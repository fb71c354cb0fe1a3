from django.urls import path

from apps.jobs import apis

app_name = "jobs"

urlpatterns = [
    path("jobs/", apis.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/results/", apis.JobResultsApi.as_view(), name="job-results"),
    path("jobs/<uuid:job_id>/webhooks/", apis.JobWebhookDeliveriesApi.as_view(), name="job-webhooks"),
    path("me/webhook-secret/", apis.WebhookSecretApi.as_view(), name="webhook-secret"),
]
