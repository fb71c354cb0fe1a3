from django.http import HttpRequest
from rest_framework.request import Request

from apps.core.exceptions import InvalidInput


def content_length(request: Request | HttpRequest) -> int:
    """The request's declared body size; 400 for a Content-Length that is not a number."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        return max(int(raw), 0)
    except ValueError as exc:
        raise InvalidInput("Content-Length is not a number.", code="bad_request") from exc


def media_type(request: Request | HttpRequest) -> str:
    """The request's media type without parameters, lower-cased (media types are
    case-insensitive: `Image/PNG` is `image/png`)."""
    return (request.content_type or "").split(";")[0].strip().lower()


def query_data(request: Request) -> dict[str, str]:
    """The query parameters as a serializer's `data`, each given once: a plain dict, so that an
    empty value (`?until=`) is validated as given (400 for a date, a number or a choice)
    instead of being read as absent, as DRF reads form-like input. A parameter given twice is
    400 too: which one was meant is unclear."""
    from rest_framework.exceptions import ValidationError

    repeated = sorted(name for name, values in request.query_params.lists() if len(values) > 1)
    if repeated:
        raise ValidationError({name: ["Given more than once."] for name in repeated})
    return request.query_params.dict()
