"""Reads of the audit trail."""

from typing import Any

from django.db.models import QuerySet

from apps.accounts.credentials import Credential
from apps.accounts.models import User
from apps.inference.models import Prediction


def prediction_list(
    *, user: User, filters: dict[str, Any], api_key: Credential | None = None
) -> QuerySet[Prediction]:
    """The rows the caller may see, newest first, filtered: their own (staff: everyone's), and
    with a key limited to named models only those models' (`Prediction.objects.visible_to`)."""
    predictions = Prediction.objects.visible_to(user, api_key)
    if filters.get("model"):
        predictions = predictions.filter(model_name=filters["model"])
    if filters.get("version") is not None:
        predictions = predictions.filter(version_number=filters["version"])
    if filters.get("status"):
        predictions = predictions.filter(status=filters["status"])
    if filters.get("source"):
        predictions = predictions.filter(source=filters["source"])
    if filters.get("since"):
        predictions = predictions.filter(created_at__gte=filters["since"])
    if filters.get("until"):
        predictions = predictions.filter(created_at__lt=filters["until"])
    if filters.get("request_id"):
        predictions = predictions.filter(request_id=filters["request_id"])
    return predictions.select_related("user", "api_key", "oauth_application").order_by("-id")
