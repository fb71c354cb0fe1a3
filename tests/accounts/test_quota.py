"""The monthly prediction quota: spent atomically, even by several processes at once."""

import multiprocessing

import pytest
from django.db import connection, connections

from apps.accounts.models import QuotaUsage, UserLimits
from apps.accounts.services.quota import QuotaExceeded, current_period, quota_consume, quota_refund, usage_for

pytestmark = pytest.mark.django_db


def test_it_spends_up_to_the_quota_then_refuses(user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 3
    for used in (1, 2, 3):
        quota_consume(user=user)
        assert QuotaUsage.objects.get(user=user).used == used
    with pytest.raises(QuotaExceeded) as error:
        quota_consume(user=user)
    assert error.value.status_code == 429
    assert error.value.code == "quota_exceeded"
    assert error.value.details["limit"] == 3
    assert QuotaUsage.objects.get(user=user).used == 3


def test_a_batch_that_would_go_over_is_refused_whole(user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 5
    quota_consume(user=user, amount=4)
    with pytest.raises(QuotaExceeded):
        quota_consume(user=user, amount=2)
    assert QuotaUsage.objects.get(user=user).used == 4


def test_a_refund_gives_units_back(user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 2
    quota_consume(user=user, amount=2)
    quota_refund(user=user, amount=1)
    quota_consume(user=user)
    assert QuotaUsage.objects.get(user=user).used == 2


def test_an_admin_override_replaces_the_default(user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 1
    UserLimits.objects.create(user=user, monthly_prediction_quota=3)
    quota_consume(user=user, amount=3)
    assert QuotaUsage.objects.get(user=user).used == 3


def test_usage_is_reported_at_me_usage(api, user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 10
    quota_consume(user=user, amount=4)
    body = api.get("/api/v1/me/usage/").json()
    assert body["predictions_used"] == 4
    assert body["monthly_prediction_quota"] == 10
    assert body["remaining"] == 6
    assert body["period"] == f"{current_period():%Y-%m}"
    me = api.get("/api/v1/me/").json()
    assert me["usage"] == body
    assert me["limits"]["monthly_prediction_quota"] == 10
    assert usage_for(user) == body


def _spend_one(user_id: int, barrier, results) -> None:
    from apps.accounts.models import User

    try:
        barrier.wait(timeout=30)
        quota_consume(user=User.objects.get(pk=user_id))
        results.put("spent")
    except QuotaExceeded:
        results.put("refused")
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"error: {exc!r}")
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs a server database; CI runs it on PostgreSQL"
)
def test_processes_racing_for_the_last_units_never_overspend(user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 10
    quota_consume(user=user, amount=7)  # 3 units left, 8 processes want one each
    connections.close_all()  # children must open their own connections
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(8), context.Queue()
    processes = [context.Process(target=_spend_one, args=(user.pk, barrier, results)) for _ in range(8)]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    assert outcomes == ["refused"] * 5 + ["spent"] * 3
    assert QuotaUsage.objects.get(user=user).used == 10
