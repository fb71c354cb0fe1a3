"""A changelist paginator for large append-only tables, which never counts the whole table."""

from typing import TYPE_CHECKING, Any, cast

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

if TYPE_CHECKING:
    from django.db.models import QuerySet


class EstimatedCountPaginator(Paginator):
    """Counts cheaply: the planner's estimate when unfiltered, a capped count otherwise.

    Unfiltered on PostgreSQL, a large table's count is `pg_class.reltuples`, which
    ANALYZE (autovacuum) keeps close; a small or never-analysed table is counted for
    real, so a stale estimate cannot hide rows or make the admin "show all" a big
    table. Filtered, or on other databases, the count stops at `count_cap` rows: the
    last pages of a broad filter are out of reach, a narrower filter brings them back.
    """

    estimate_above = 10_000
    count_cap = 100_000

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet[Any]", self.object_list)  # a changelist always pages a QuerySet
        if not queryset.query.has_filters():
            estimate = self.estimate(queryset)
            if estimate is not None and estimate > self.estimate_above:
                return estimate
        # COUNT(*) over a LIMITed subquery: no ordering, so any plan may stop early.
        return queryset.order_by()[: self.count_cap].count()

    @staticmethod
    def estimate(queryset: "QuerySet[Any]") -> int | None:
        """Rows in the queryset's table by the planner's statistics; None if it has none."""
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # -1 (PostgreSQL 14+) or 0 until the table is first analysed.
        return row[0] if row and row[0] > 0 else None
