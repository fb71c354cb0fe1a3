"""An OAuth access token on the platform's API: the same Bearer path as a JWT, told apart by
its form; the same scopes, model lists, visibility, throttles and quota as an API key; every
refusal in the platform's error shape."""

import datetime as dt
import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import get_access_token_model
from rest_framework_simplejwt.tokens import AccessToken as JWT

from apps.inference.models import Prediction
from apps.jobs.models import BatchJob
from apps.oauth import services
from apps.oauth.authentication import forget_tokens
from tests.factories import MLModelFactory
from tests.inference.conftest import TINY_PREPROCESSING, encode, ready_version
from tests.oauth.conftest import bearer

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
PREDICT = "/api/v1/models/tiny/predict"


def image() -> bytes:
    from PIL import Image

    return encode(Image.new("RGB", (8, 8), (200, 10, 10)), "PNG")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


def predict(client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        PREDICT, {"image": SimpleUploadedFile("x.png", image(), "image/png")}, format="multipart"
    )


def test_a_token_predicts_and_its_audit_row_records_the_application(machine_token, tiny_version):
    token, application = machine_token()
    response = predict(bearer(token))
    assert response.status_code == 200, response.content
    row = Prediction.objects.get()
    assert row.oauth_application_id == application.pk
    assert row.api_key_id is None
    assert row.user.username == "alice"
    listed = bearer(token).get("/api/v1/predictions/").json()["results"][0]
    assert listed["oauth_application"] == application.client_id


def test_the_request_log_line_names_the_application(machine_token, log_records):
    token, application = machine_token()
    bearer(token).get("/api/v1/me/")
    line = [r for r in log_records if r.name == "mlplatform.request"][-1]
    assert line.getMessage() == "GET /api/v1/me/ 200"
    assert line.oauth_application == application.client_id


def test_a_token_submits_a_job_that_records_the_application(
    machine_token, tiny_version, settings, django_capture_on_commit_callbacks
):
    settings.JOB_PROGRESS_INTERVAL_SECONDS = 0
    token, application = machine_token()
    from django.core.files.uploadedfile import SimpleUploadedFile

    with django_capture_on_commit_callbacks(execute=True):
        response = bearer(token).post(
            "/api/v1/jobs/",
            {"model": "tiny", "inputs": [SimpleUploadedFile("a.png", image(), "image/png")]},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    job = BatchJob.objects.get()
    assert job.oauth_application_id == application.pk and job.api_key_id is None
    job.refresh_from_db()
    assert job.status == "succeeded"  # run eagerly in tests
    assert Prediction.objects.get(source="job").oauth_application_id == application.pk


def test_a_token_without_the_scope_is_403_scope_missing(machine_token, tiny_version):
    token, _ = machine_token(scope="models:read")
    assert bearer(token).get("/api/v1/models/").status_code == 200
    response = predict(bearer(token))
    assert_error(response, 403, "scope_missing")
    assert "OAuth token lacks the 'predict' scope" in response.json()["error"]["message"]


def test_a_token_is_limited_to_its_applications_models(machine_token, tiny_version, user):
    MLModelFactory(name="other", owner=user)
    token, _ = machine_token(model_names=["other"])
    assert_error(predict(bearer(token)), 403, "model_not_granted")
    names = [m["name"] for m in bearer(token).get("/api/v1/models/").json()["results"]]
    assert names == ["other"]


def test_a_token_never_exceeds_its_user(machine_token, other_user):
    """bob's private model is invisible to alice's token (404), as to alice herself."""
    model = MLModelFactory(name="tiny", owner=other_user)
    from tests import onnx_models

    ready_version(
        model, onnx_models.tiny_classifier(), labels=["a", "b", "c"], preprocessing=TINY_PREPROCESSING
    )
    token, _ = machine_token()
    assert_error(predict(bearer(token)), 404, "model_not_found")


def test_a_models_write_token_cannot_write_what_its_user_may_only_read(machine_token, other_user):
    from apps.registry.models import MLModel

    MLModelFactory(name="shared", owner=other_user, visibility=MLModel.Visibility.INTERNAL)
    token, _ = machine_token()
    response = bearer(token).patch("/api/v1/models/shared/", {"description": "mine now"}, format="json")
    assert_error(response, 403, "permission_denied")


def test_a_token_cannot_manage_api_keys_or_oauth_applications(machine_token):
    token, _ = machine_token()
    for url in ("/api/v1/api-keys/", "/api/v1/oauth/applications/"):
        assert_error(bearer(token).get(url), 403, "api_key_not_allowed")
        assert_error(bearer(token).post(url, {}, format="json"), 403, "api_key_not_allowed")


def test_an_expired_token_is_401_token_expired(machine_token):
    token, _ = machine_token()
    AccessToken.objects.update(expires=timezone.now() - dt.timedelta(seconds=1))
    assert_error(bearer(token).get("/api/v1/me/"), 401, "token_expired")


def test_a_revoked_token_is_401_invalid_token(machine_token):
    token, _ = machine_token()
    assert bearer(token).get("/api/v1/me/").status_code == 200
    services.token_revoke(access_token=AccessToken.objects.get())
    assert_error(bearer(token).get("/api/v1/me/"), 401, "invalid_token")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("mlpat_short", id="malformed"),
        pytest.param("mlpat_" + "A" * 43, id="unknown"),
        pytest.param("mlpat_" + "A" * 42 + "!", id="bad-character"),
    ],
)
def test_a_malformed_or_unknown_token_is_401_invalid_token(db, value):
    response = bearer(value).get("/api/v1/me/")
    assert_error(response, 401, "invalid_token")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_refresh_token_sent_as_a_bearer_token_is_401(code_flow):
    tokens, _ = code_flow()
    response = bearer(tokens["refresh_token"]).get("/api/v1/me/")
    assert_error(response, 401, "invalid_token")
    assert "refresh token" in response.json()["error"]["message"]


def test_a_token_of_a_disabled_application_is_401_at_once(machine_token):
    token, application = machine_token()
    assert bearer(token).get("/api/v1/me/").status_code == 200  # cached now
    services.application_update(application=application, disabled=True)
    assert_error(bearer(token).get("/api/v1/me/"), 401, "application_disabled")
    services.application_update(application=application, disabled=False)
    assert bearer(token).get("/api/v1/me/").status_code == 200


def test_a_token_of_a_deactivated_user_is_401_at_once(code_flow, make_app, user, other_user):
    tokens, _ = code_flow(make_app(grant_type="authorization_code", owner=other_user))
    assert bearer(tokens["access_token"]).get("/api/v1/me/").status_code == 200
    user.is_active = False
    user.save()
    assert_error(bearer(tokens["access_token"]).get("/api/v1/me/"), 401, "user_inactive")


def test_narrowing_the_applications_scopes_narrows_issued_tokens_at_once(machine_token, tiny_version):
    token, application = machine_token()
    assert bearer(token).get("/api/v1/models/").status_code == 200
    services.application_update(application=application, scopes=["predict"])
    assert_error(bearer(token).get("/api/v1/models/"), 403, "scope_missing")


def test_a_jwt_still_works_and_a_bad_one_is_still_token_not_valid(user):
    assert bearer(str(JWT.for_user(user))).get("/api/v1/me/").json()["authenticated_with"] == "jwt"
    assert_error(bearer("eyJhbGciOiJIUzI1NiJ9.e30.bad").get("/api/v1/me/"), 401, "token_not_valid")


def test_a_bearer_header_with_extra_parts_is_401(db):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer mlpat_a b")
    assert_error(client.get("/api/v1/me/"), 401, "bad_authorization_header")


def test_a_token_costs_one_indexed_query_on_a_miss_and_none_once_cached(machine_token, settings):
    settings.LOCAL_CACHE_SECONDS = 0  # the shared cache alone (a per-process hit costs nothing)
    token, _ = machine_token()
    forget_tokens(list(AccessToken.objects.values_list("token_checksum", flat=True)))
    with CaptureQueriesContext(connection) as miss:
        assert bearer(token).get("/api/v1/oauth/applications/").status_code == 403
    with CaptureQueriesContext(connection) as hit:
        assert bearer(token).get("/api/v1/oauth/applications/").status_code == 403
    token_queries = [q["sql"] for q in miss.captured_queries if "oauth2_provider_accesstoken" in q["sql"]]
    assert len(token_queries) == 1
    assert '"token_checksum" =' in token_queries[0]
    assert len(miss.captured_queries) == 1
    assert len(hit.captured_queries) == 0


def test_failed_token_authentications_count_toward_the_address_limit(db, settings):
    settings.AUTH_FAILURE_RATE = "2/min"
    statuses = [bearer("mlpat_" + "B" * 43).get("/api/v1/me/").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_a_token_counts_against_its_users_rate(machine_token, tiny_version, settings, key_client):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "2/min"}
    token, _ = machine_token()
    assert predict(bearer(token)).status_code == 200
    assert predict(key_client()).status_code == 200  # one limit for all of alice's credentials
    response = predict(bearer(token))
    assert_error(response, 429, "throttled")
    assert "Retry-After" in response


def test_a_token_spends_its_users_quota(machine_token, tiny_version, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 1
    token, _ = machine_token()
    assert predict(bearer(token)).status_code == 200
    assert_error(predict(bearer(token)), 429, "quota_exceeded")


def test_log_records_carry_no_token(machine_token, caplog):
    caplog.set_level(logging.DEBUG)
    token, _ = machine_token()
    bearer(token).get("/api/v1/me/")
    assert token not in caplog.text


def test_a_deleted_applications_rows_keep_its_id_and_read_null(machine_token, tiny_version, api, staff_user):
    token, application = machine_token()
    assert predict(bearer(token)).status_code == 200
    application_id = application.pk
    application.delete()  # disabling is the way; deleting leaves the id in the audit rows
    row = Prediction.objects.get()
    assert row.oauth_application_id == application_id
    assert api.get("/api/v1/predictions/").json()["results"][0]["oauth_application"] is None
    from django.test import Client

    admin = Client()
    admin.force_login(staff_user)
    assert admin.get(f"/admin/inference/prediction/{row.pk}/change/").status_code == 200
