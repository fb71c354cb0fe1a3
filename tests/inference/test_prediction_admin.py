"""The audit trail's admin changelist: filters and search work, and no page scans the table."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.admin_paginator import EstimatedCountPaginator
from apps.inference.models import Prediction
from tests.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

URL = "/admin/inference/prediction/"


def make(user, n: int = 1, **fields) -> list[Prediction]:
    defaults = {"model_name": "a", "version_number": 1, "status": "succeeded", "source": "sync"}
    return [Prediction.objects.create(user=user, **{**defaults, **fields}) for _ in range(n)]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def shown(client, query: str = "") -> set[int]:
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 200, response
    return {row.pk for row in response.context["cl"].result_list}


def choices(client, query: str, field: str) -> list[str]:
    changelist = client.get(f"{URL}?{query}").context["cl"]
    spec = next(s for s in changelist.filter_specs if getattr(s, "field_path", None) == field)
    return [choice["display"] for choice in spec.choices(changelist)][1:]  # after "All"


def prediction_sql(queries) -> list[str]:
    return [q["sql"] for q in queries if "inference_prediction" in q["sql"]]


def test_filters_offer_registry_values_and_filter_the_rows(staff_client, user):
    a = MLModelFactory(name="a", owner=user)
    ModelVersionFactory(model=a, number=1)
    ModelVersionFactory(model=a, number=2)
    ModelVersionFactory(model=MLModelFactory(name="b", owner=user), number=7)
    a1, a2 = make(user, 2)
    a_v2 = make(user, 1, version_number=2, status="failed", error_code="inference_failed")[0]
    gone = make(user, 1, model_name="deleted-model", version_number=9)[0]

    assert choices(staff_client, "", "model_name") == ["a", "b"]
    assert choices(staff_client, "", "version_number") == ["1", "2", "7"]
    assert choices(staff_client, "model_name=a", "version_number") == ["1", "2"]
    assert choices(staff_client, "", "error_code") == ["inference_failed"]
    # A value the registry no longer has still filters, and shows as selected.
    assert choices(staff_client, "model_name=deleted-model", "model_name") == ["a", "b", "deleted-model"]

    assert shown(staff_client, "model_name=a") == {a1.pk, a2.pk, a_v2.pk}
    assert shown(staff_client, "model_name=a&version_number=2") == {a_v2.pk}
    assert shown(staff_client, "model_name=deleted-model") == {gone.pk}
    assert shown(staff_client, "error_code=inference_failed") == {a_v2.pk}
    assert shown(staff_client, "status__exact=failed&source__exact=sync") == {a_v2.pk}


def test_the_created_at_filter_takes_ranges_and_old_date_hierarchy_links(staff_client, user):
    new = make(user, 1)[0]
    old = make(user, 1)[0]
    when = timezone.now() - dt.timedelta(days=40)
    Prediction.objects.filter(pk=old.pk).update(created_at=when)

    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    assert shown(staff_client, f"created_at__gte={today.isoformat().replace('+', '%2B')}") == {new.pk}
    assert shown(staff_client, f"created_at__year={when.year}&created_at__month={when.month}") == {old.pk}
    day = f"created_at__year={when.year}&created_at__month={when.month}&created_at__day={when.day}"
    assert shown(staff_client, day) == {old.pk}


@pytest.mark.parametrize(
    "query",
    [
        "created_at__year=9999&created_at__month=12",
        "created_at__year=9999&created_at__month=12&created_at__day=31",
        "created_at__year=10000",
        "created_at__year=0",
        "created_at__year=2024&created_at__month=13",
        "created_at__year=x",
        "created_at__gte=yesterday",
        "version_number=x",
    ],
)
def test_a_bad_date_or_number_is_the_admins_bad_lookup_redirect(staff_client, user, query):
    make(user, 1)
    response = staff_client.get(f"{URL}?{query}")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_search_matches_exactly_on_indexed_columns(staff_client, user, other_user):
    mine = make(user, 2)
    theirs = make(other_user, 1, request_id="req-123", input_sha256="ab" * 32)[0]

    assert shown(staff_client, "q=req-123") == {theirs.pk}
    assert shown(staff_client, "q=" + "AB" * 32) == {theirs.pk}
    assert shown(staff_client, "q=alice") == {p.pk for p in mine}
    assert shown(staff_client, "q=req") == set()  # no substring search: it scans the table
    assert shown(staff_client, f"q=alice&user__id__exact={other_user.pk}") == set()


@pytest.mark.parametrize(
    "query", ["", "model_name=a&version_number=1", "q=alice", "created_at__year=2024", "p=1"]
)
def test_no_page_runs_distinct_or_an_uncapped_count_over_the_table(staff_client, user, other_user, query):
    MLModelFactory(name="a", owner=user)
    for n in range(150):  # two pages; users alternate, so a per-row user query would show
        make(user if n % 2 else other_user, 1, error_code=f"code-{n % 3}")

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(f"{URL}?{query}")
    assert response.status_code == 200

    sql = prediction_sql(queries.captured_queries)
    assert not [s for s in sql if "DISTINCT" in s.upper()]
    counts = [s for s in sql if "COUNT(" in s.upper()]
    assert len(counts) <= 1
    assert all("LIMIT" in s.upper() for s in counts)
    # Session, user, registry choices, error codes, count, page: not one per row.
    assert len(queries.captured_queries) <= 10


def test_the_capped_count_pages_as_far_as_the_cap(user, monkeypatch):
    make(user, 5)
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 3)
    paginator = EstimatedCountPaginator(Prediction.objects.order_by("-pk"), 2)
    assert paginator.count == 3
    assert paginator.num_pages == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the estimate is PostgreSQL's")
def test_an_unfiltered_page_of_a_large_table_counts_nothing_on_postgresql(staff_client, user, monkeypatch):
    rows = make(user, 120)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inference_prediction")  # what autovacuum does on a real table
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_above", 100)  # "large"

    with CaptureQueriesContext(connection) as queries:
        changelist = staff_client.get(URL).context["cl"]
    assert not [s for s in prediction_sql(queries.captured_queries) if "COUNT(" in s.upper()]
    assert changelist.result_count == 120  # ANALYZE reads every row of a table this small
    assert {row.pk for row in changelist.result_list} == {p.pk for p in rows[-100:]}

    # Filtered, the estimate says nothing: a real (capped) count.
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(f"{URL}?status__exact=failed").context["cl"].result_count == 0
    assert [s for s in prediction_sql(queries.captured_queries) if "COUNT(" in s.upper()]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the estimate is PostgreSQL's")
def test_a_never_analysed_table_is_counted_for_real(user):
    make(user, 3)
    paginator = EstimatedCountPaginator(Prediction.objects.order_by("-pk"), 2)
    assert paginator.count == 3
