from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

if TYPE_CHECKING:  # DRF's views import this module through its settings
    from rest_framework.views import APIView


def whole_number(request: Request, name: str) -> None:
    """400 for a paging parameter that is not one whole number (`?offset=x`, `?offset=1&offset=2`):
    DRF quietly used its default, so a client's mistake went unnoticed."""
    values = request.query_params.getlist(name)
    if not values:
        return
    try:
        if len(values) > 1:
            raise ValueError
        int(values[0])
    except ValueError:
        raise ValidationError({name: ["A single whole number."]}) from None


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def paginate_queryset(self, queryset: Any, request: Request, view: APIView | None = None) -> Any:
        whole_number(request, self.limit_query_param)
        whole_number(request, self.offset_query_param)
        return super().paginate_queryset(queryset, request, view)


class CursorPagination(pagination.CursorPagination):
    """DRF's cursor pagination, with every cursor it did not make refused (404 not_found).

    DRF checks a cursor's encoding, not its position: `p=xyz` for an integer ordering
    reached the database and failed there (a 500). Positions here are integers (ids, indexes).
    """

    def paginate_queryset(self, queryset: Any, request: Request, view: APIView | None = None) -> Any:
        if self.page_size_query_param:
            whole_number(request, self.page_size_query_param)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                int(cursor.position)
            except ValueError:
                raise NotFound(self.invalid_cursor_message) from None
        return cursor


def paginated_response(request: Request, view: APIView, queryset: Any, serializer_class: type) -> Response:
    """One page of `queryset` (limit/offset), serialized, with count and links."""
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
