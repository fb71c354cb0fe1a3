"""Admin for the audit trail. The table grows by millions of rows, so no page may scan it:
no DISTINCT for filter choices or a date hierarchy, no full COUNT(*), only indexed searches."""

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.admin_paginator import EstimatedCountPaginator
from apps.inference.models import Prediction
from apps.registry.models import MLModel, ModelVersion

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups  # the stubs' name for a fields list


class CreatedAtFilter(admin.DateFieldListFilter):
    """Django's fixed ranges (today, past 7 days, …), which use the created_at index.

    It also takes the ?created_at__year=&__month=&__day= links of the date hierarchy this
    admin used to have, bounded the same way; a date out of range is a bad lookup (the
    admin's ?e=1 redirect), not a 500.
    """

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.date_parts = [f"{field_path}__{part}" for part in ("year", "month", "day")]
        super().__init__(field, request, params, model, model_admin, field_path)
        # Taken out of used_parameters, which the ranges' own filtering reads.
        # (Django keeps each parameter's values as a list; the stub says object.)
        self.date_values = [self.used_parameters.pop(p, [None])[-1] for p in self.date_parts]  # type: ignore[index]

    def expected_parameters(self) -> list[str | None]:
        return [*super().expected_parameters(), *self.date_parts]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        filtered = super().queryset(request, queryset)
        year, month, day = self.date_values
        if year is None or filtered is None:
            return filtered
        try:
            since = dt.datetime(int(year), int(month or 1), int(day or 1))
            if day:
                until = since + dt.timedelta(days=1)
            elif month:
                until = (since + dt.timedelta(days=32)).replace(day=1)
            else:
                until = since.replace(year=since.year + 1)
        except (ValueError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        if settings.USE_TZ:
            since, until = timezone.make_aware(since), timezone.make_aware(until)
        return filtered.filter(**{f"{self.field_path}__gte": since, f"{self.field_path}__lt": until})


class ValueListFilter(admin.FieldListFilter):
    """`?<field>=value`, as Django's all-values filter takes it, but offering values from a
    cheap source: that filter runs SELECT DISTINCT over the whole audit table on every page.
    Any value still filters; one not offered is listed while it is selected."""

    limit = 100
    clears: list[str] = []  # parameters a new choice here resets

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.lookup_kwarg = field_path
        super().__init__(field, request, params, model, model_admin, field_path)
        selected = self.used_parameters.get(self.lookup_kwarg)
        # (Django keeps each parameter's values as a list; the stub says object.)
        self.lookup_val = str(selected[-1]) if selected else None  # type: ignore[index]
        offered = [str(value) for value in self.values(request, model)]
        if self.lookup_val is not None and self.lookup_val not in offered:
            offered.append(self.lookup_val)
        self.lookup_choices = offered

    def values(self, request: HttpRequest, model: type[Prediction]) -> Iterable:
        raise NotImplementedError

    def expected_parameters(self) -> list[str | None]:
        return [self.lookup_kwarg]

    def choices(self, changelist):
        yield {
            "selected": self.lookup_val is None,
            "query_string": changelist.get_query_string(remove=[self.lookup_kwarg, *self.clears]),
            "display": _("All"),
        }
        for value in self.lookup_choices:
            yield {
                "selected": value == self.lookup_val,
                "query_string": changelist.get_query_string({self.lookup_kwarg: value}, self.clears),
                "display": value,
            }


class ModelNameFilter(ValueListFilter):
    """The registry's model names (a deleted model's rows: by its name in the URL)."""

    clears = ["version_number"]  # version numbers belong to one model

    def values(self, request: HttpRequest, model: type[Prediction]) -> Iterable:
        return MLModel.objects.order_by("name").values_list("name", flat=True)[: self.limit]


class VersionNumberFilter(ValueListFilter):
    """The registry's version numbers: of the selected model, or of any model."""

    def values(self, request: HttpRequest, model: type[Prediction]) -> Iterable:
        versions = ModelVersion.objects.all()
        if name := request.GET.get("model_name"):
            versions = versions.filter(model__name=name)
        return versions.order_by("number").values_list("number", flat=True).distinct()[: self.limit]


class ErrorCodeFilter(ValueListFilter):
    """Codes seen in the newest rows (a read down the primary key); older ones by URL."""

    recent = 1000

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = _("error code (recent)")

    def values(self, request: HttpRequest, model: type[Prediction]) -> Iterable:
        newest = model._default_manager.order_by("-pk").values_list("error_code", flat=True)
        return sorted(set(newest[: self.recent]) - {""})[: self.limit]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail: browsable and filterable, never edited."""

    # What a maintainer scans for first (outcome, error, latency) before who and how, so the
    # key columns stay on screen at 1400 px.
    list_display = [
        "id",
        "created_at",
        "model_name",
        "version_number",
        "status",
        "error_code",
        "latency_ms",
        "source",
        "user",
        "alias",
        "route",
        "request_id",
    ]
    list_filter = [
        "status",
        "source",
        ("model_name", ModelNameFilter),
        ("version_number", VersionNumberFilter),
        ("error_code", ErrorCodeFilter),
        ("created_at", CreatedAtFilter),
    ]
    # The changelist's ?user__id__exact=N filters by user id.
    search_fields = ["=request_id", "=input_sha256", "=user__username"]
    search_help_text = _("An exact request id, input SHA-256 or username.")
    list_select_related = ["user"]
    # Not an editable field, so not on the form; the detail page shows it first.
    readonly_fields = ["created_at"]
    # Sorting on an unindexed column sorts the whole table.
    sortable_by = ["id", "created_at"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False  # a second count, of the unfiltered table
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice

    def get_fields(self, request: HttpRequest, obj: Prediction | None = None) -> "_FieldGroups":
        fields = super().get_fields(request, obj)
        return ["created_at", *[name for name in fields if name != "created_at"]]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Exact matches on indexed columns. Django's `=` is iexact (UPPER(), which no index
        serves), and a join to users inside the OR would scan the table, so the user is
        looked up first."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(request_id=term) | Q(input_sha256=term.lower())
        users = get_user_model().objects.filter(username=term).values_list("pk", flat=True)
        if user_ids := list(users[:1]):
            match |= Q(user_id__in=user_ids)
        return queryset.filter(match), False
