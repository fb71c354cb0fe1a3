import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from apps.accounts.apps import check_rates
from apps.accounts.models import UserLimits
from apps.accounts.services.limits import limits_invalidate, rate_for
from apps.accounts.services.quota import QuotaExceeded, quota_consume

pytestmark = pytest.mark.django_db


def test_a_limits_record_with_a_bad_rate_is_refused(user):
    limits = UserLimits(user=user, predict_rate="lots")
    with pytest.raises(ValidationError) as error:
        limits.full_clean()
    assert "predict_rate" in error.value.message_dict


def test_a_bad_rate_stored_anyway_falls_back_to_the_default(user, settings):
    UserLimits.objects.create(user=user, predict_rate="lots")
    assert rate_for(user, "predict").limit == int(settings.THROTTLE_RATES["predict"].split("/")[0])


def test_a_bad_rate_setting_stops_the_process_at_start(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "lots"}
    with pytest.raises(ImproperlyConfigured, match="predict"):
        check_rates()


def test_a_blank_default_rate_turns_that_limit_off(user, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "jobs": ""}
    check_rates()  # starts
    assert rate_for(user, "jobs") is None
    UserLimits.objects.create(user=user, jobs_rate="lots")  # a bad override, stored anyway
    limits_invalidate(user.pk)
    assert rate_for(user, "jobs") is None  # falls back to the blank default: no limit


def test_a_blank_auth_failure_rate_stops_the_process_at_start(settings):
    settings.AUTH_FAILURE_RATE = ""
    with pytest.raises(ImproperlyConfigured, match="AUTH_FAILURE_RATE"):
        check_rates()


@pytest.mark.parametrize("rate", ["5/0s", "1/0min"])
def test_a_rate_over_a_zero_length_period_is_refused(user, settings, rate):
    with pytest.raises(ValidationError):
        UserLimits(user=user, predict_rate=rate).full_clean()
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": rate}
    with pytest.raises(ImproperlyConfigured, match="predict"):
        check_rates()


def test_no_quota_setting_means_unlimited_and_zero_means_none(user, settings):
    settings.MONTHLY_PREDICTION_QUOTA = None
    quota_consume(user=user, amount=10_000)
    settings.MONTHLY_PREDICTION_QUOTA = 0
    limits_invalidate(user.pk)  # limits are cached for a minute
    with pytest.raises(QuotaExceeded):
        quota_consume(user=user)


def test_the_limits_admin_refuses_a_bad_rate(client, staff_user, user):
    client.force_login(staff_user)
    response = client.post(
        "/admin/accounts/userlimits/add/",
        {"user": user.pk, "plan": "x", "predict_rate": "lots", "jobs_rate": "", "registry_write_rate": ""},
    )
    assert response.status_code == 200
    assert not UserLimits.objects.exists()
    assert client.get("/admin/registry/modelgrant/").status_code == 200
    assert client.get("/admin/accounts/apikey/").status_code == 200
    assert client.get("/admin/accounts/quotausage/").status_code == 200
