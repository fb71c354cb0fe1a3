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


class CursorPagination(pagination.CursorPagination):
    """DRF's cursor pagination, with every cursor it did not make refused (404 not_found).

    DRF checks a cursor's encoding, not its position: `p=xyz` for an integer ordering
    reached the database and failed there (a 500). Positions here are integers (ids, indexes).
    """

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                int(cursor.position)
            except ValueError:
                raise pagination.NotFound(self.invalid_cursor_message) from None
        return cursor


def paginated_response(request: Request, view: APIView, queryset: Any, serializer_class: type) -> Response:
    """One page of `queryset` (limit/offset), serialized, with count and links."""
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
