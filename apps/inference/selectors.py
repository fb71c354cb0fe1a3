"""Reads of the audit trail."""

from typing import Any

from django.db.models import QuerySet

from apps.accounts.models import ApiKey, User
from apps.inference.models import Prediction


def prediction_list(
    *, user: User, filters: dict[str, Any], api_key: ApiKey | None = None
) -> QuerySet[Prediction]:
    """The user's predictions (staff: everyone's), newest first, filtered. A key limited to
    named models sees only those models' rows."""
    predictions = Prediction.objects.all() if user.is_staff else Prediction.objects.filter(user=user)
    if api_key is not None and api_key.model_names:
        predictions = predictions.filter(model_name__in=api_key.model_names)
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
    return predictions.select_related("user", "api_key").order_by("-id")
