"""OpenAPI pieces shared by every app: the one error shape."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable machine-readable code."),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
                "request_id": serializers.CharField(),
            },
        )
    },
)

DESCRIPTIONS = {
    400: "Invalid input",
    401: "No or bad credentials",
    403: "Not allowed",
    404: "Not found or not visible",
    409: "Conflict with the current state",
    413: "Too large",
    415: "Unsupported media type",
    422: "Content cannot be used",
    429: "Throttled",
    503: "A dependency is down; retry later",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the listed error statuses (401 is always included)."""
    return {
        status: OpenApiResponse(response=ErrorSerializer, description=DESCRIPTIONS[status])
        for status in sorted({401, *statuses})
    }
