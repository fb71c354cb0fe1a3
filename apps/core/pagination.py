from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import pagination
from rest_framework.request import Request
from rest_framework.response import Response

if TYPE_CHECKING:  # DRF's views import this module through its settings
    from rest_framework.views import APIView


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


def paginated_response(request: Request, view: APIView, queryset: Any, serializer_class: type) -> Response:
    """One page of `queryset` (limit/offset), serialized, with count and links."""
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
