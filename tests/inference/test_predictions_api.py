import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.inference.models import Prediction

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions/"


def make(user, n: int = 1, **fields):
    defaults = {"model_name": "m", "version_number": 1, "status": "succeeded", "source": "sync"}
    return [Prediction.objects.create(user=user, **{**defaults, **fields}) for _ in range(n)]


def test_it_lists_only_the_callers_predictions(api, user, other_user):
    make(user, 2)
    make(other_user, 3)
    body = api.get(URL).json()
    assert len(body["results"]) == 2
    assert {r["user"] for r in body["results"]} == {"alice"}


def test_staff_see_everyones(client_for, staff_user, user, other_user):
    make(user, 2)
    make(other_user, 3)
    assert len(client_for(staff_user).get(URL).json()["results"]) == 5


def test_it_filters_by_model_version_status_and_time(api, user):
    make(user, 1, model_name="a", version_number=1)
    make(user, 1, model_name="a", version_number=2, status="failed")
    make(user, 1, model_name="b")
    old = make(user, 1, model_name="a")[0]
    Prediction.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    assert len(api.get(URL, {"model": "a"}).json()["results"]) == 3
    assert len(api.get(URL, {"model": "a", "version": 2}).json()["results"]) == 1
    assert len(api.get(URL, {"status": "failed"}).json()["results"]) == 1
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert len(api.get(URL, {"model": "a", "since": since}).json()["results"]) == 2
    assert len(api.get(URL, {"until": since}).json()["results"]) == 1


def test_bad_filters_are_400(api):
    for params in ({"since": "yesterday"}, {"version": "x"}, {"status": "maybe"}):
        response = api.get(URL, params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "invalid_input"


def test_it_pages_with_a_cursor_newest_first(api, user):
    rows = make(user, 5)
    first = api.get(URL, {"limit": 2}).json()
    assert [r["id"] for r in first["results"]] == [rows[4].pk, rows[3].pk]
    second = api.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == [rows[2].pk, rows[1].pk]


def test_purge_deletes_old_rows_in_batches(user, capsys):
    old = make(user, 5)
    make(user, 2)
    Prediction.objects.filter(pk__in=[p.pk for p in old]).update(
        created_at=timezone.now() - dt.timedelta(days=40)
    )
    call_command("purge_predictions", "--older-than", "30", "--batch-size", "2")
    assert Prediction.objects.count() == 2
    assert "Deleted 5" in capsys.readouterr().out


def test_purge_batches_are_bounded_by_id_not_listed(user):
    """Old and new rows interleaved: only the old go, in batches whose statements do not
    list every id (SQLite refuses more than 250,000 parameters)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rows = make(user, 9)
    old = [p.pk for p in rows[::2]]  # 5 old rows between 4 new ones
    Prediction.objects.filter(pk__in=old).update(created_at=timezone.now() - dt.timedelta(days=40))
    with CaptureQueriesContext(connection) as queries:
        call_command("purge_predictions", "--older-than", "30", "--batch-size", "2")
    assert sorted(Prediction.objects.values_list("pk", flat=True)) == [p.pk for p in rows[1::2]]
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3
    assert not any(" IN (" in sql for sql in deletes)


@pytest.mark.parametrize("days", ["800000", "1000000000", str(10**20)])
def test_purge_with_more_days_than_the_calendar_is_a_clear_error(user, days):
    from django.core.management.base import CommandError

    make(user, 1)
    with pytest.raises(CommandError, match="too large"):
        call_command("purge_predictions", "--older-than", days)
    assert Prediction.objects.count() == 1


def test_purge_dry_run_deletes_nothing(user, capsys):
    old = make(user, 3)
    Prediction.objects.filter(pk__in=[p.pk for p in old]).update(
        created_at=timezone.now() - dt.timedelta(days=40)
    )
    call_command("purge_predictions", "--older-than", "30", "--dry-run")
    assert Prediction.objects.count() == 3
    assert "Would delete 3" in capsys.readouterr().out


def test_predictions_are_browsable_in_the_admin(client, staff_user, user, other_user):
    make(user, 2)
    make(user, 1, model_name="other", version_number=3, status="failed")
    make(other_user, 1)
    client.force_login(staff_user)
    assert client.get("/admin/inference/prediction/").status_code == 200

    def shown(query: str) -> set[int]:
        response = client.get(f"/admin/inference/prediction/?{query}")
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    changelist = client.get("/admin/inference/prediction/").context["cl"]
    filters = {spec.field_path for spec in changelist.filter_specs if hasattr(spec, "field_path")}
    assert {"status", "model_name", "version_number", "created_at"} <= filters
    assert len(shown("status__exact=succeeded")) == 3
    assert shown("model_name=other") == shown("version_number=3") == shown("status__exact=failed")
    assert len(shown("version_number=3")) == 1
    assert len(shown(f"user__id__exact={user.pk}")) == 3
    assert len(shown("q=" + other_user.username)) == 1


@pytest.mark.parametrize("position", ["xyz", "1.5", ""])
def test_a_cursor_the_server_did_not_make_is_404(api, user, position):
    import base64

    make(user, 2)
    cursor = base64.b64encode(f"p={position}".encode()).decode()
    response = api.get(URL, {"cursor": cursor})
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"


def test_until_before_since_is_400(api, user):
    make(user, 1)
    response = api.get(URL, {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"})
    assert response.status_code == 400
    assert "until" in response.json()["error"]["details"]


def test_rows_stay_their_makers_after_the_grant_and_the_model_are_gone(api, user, other_user):
    from apps.registry.models import MLModel, ModelGrant
    from tests.factories import MLModelFactory

    model = MLModelFactory(name="bobs", owner=other_user)
    grant = ModelGrant.objects.create(model=model, user=user, role="consumer")
    make(user, 2, model_name="bobs")
    grant.delete()
    assert [r["model"] for r in api.get(URL).json()["results"]] == ["bobs", "bobs"]
    MLModel.objects.filter(pk=model.pk).delete()
    assert len(api.get(URL, {"model": "bobs"}).json()["results"]) == 2


def test_a_models_owner_does_not_see_other_users_rows_on_it(client_for, user, other_user):
    from tests.factories import MLModelFactory

    MLModelFactory(name="mine", owner=user, visibility="internal")
    make(other_user, 2, model_name="mine")
    make(user, 1, model_name="mine")
    assert [r["user"] for r in client_for(user).get(URL).json()["results"]] == ["alice"]
    assert len(client_for(other_user).get(URL).json()["results"]) == 2


def test_visible_to_is_the_callers_rows_narrowed_by_the_keys_models(user, other_user, staff_user):
    from apps.accounts.models import ApiKey

    mine, theirs = make(user, 1, model_name="a")[0], make(other_user, 1, model_name="b")[0]
    limited = ApiKey(owner=staff_user, model_names=["a"])
    assert list(Prediction.objects.visible_to(user)) == [mine]
    assert list(Prediction.objects.visible_to(user, ApiKey(owner=user))) == [mine]
    assert list(Prediction.objects.visible_to(staff_user)) == [theirs, mine]
    assert list(Prediction.objects.visible_to(staff_user, limited)) == [mine]
    assert list(Prediction.objects.visible_to(user, ApiKey(owner=user, model_names=["b"]))) == []
