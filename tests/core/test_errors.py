"""One error shape for every kind of error, with a stable code and the request id."""

import pytest
from rest_framework.test import APIClient

from tests.factories import MLModelFactory

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response["X-Request-ID"]
    return error


def test_validation_errors_are_400_with_field_details(api):
    error = assert_error_shape(api.post("/api/v1/models/", {}, format="json"), 400, "invalid_input")
    assert "name" in error["details"]


def test_malformed_json_is_400(api):
    response = api.generic("POST", "/api/v1/models/", b"{not json", content_type="application/json")
    assert_error_shape(response, 400, "malformed_request")


def test_missing_credentials_are_401(anon):
    assert_error_shape(anon.get("/api/v1/models/"), 401, "not_authenticated")


def test_forbidden_is_403(api, other_user):
    MLModelFactory(name="shared", owner=other_user, visibility="internal")
    assert_error_shape(api.delete("/api/v1/models/shared/"), 403, "permission_denied")


def test_an_unknown_api_object_is_404(api):
    assert_error_shape(api.get("/api/v1/models/nope/"), 404, "model_not_found")


def test_an_unknown_url_is_404_in_the_same_shape(api):
    assert_error_shape(api.get("/api/v1/does-not-exist/"), 404, "not_found")


def test_a_wrong_method_is_405(api):
    assert_error_shape(api.put("/api/v1/models/", {}, format="json"), 405, "method_not_allowed")


def test_an_unsupported_media_type_is_415(api):
    response = api.generic("POST", "/api/v1/models/", b"name=x", content_type="text/plain")
    assert_error_shape(response, 415, "unsupported_media_type")


def test_a_conflict_is_409(api, user):
    MLModelFactory(name="taken", owner=user)
    assert_error_shape(api.post("/api/v1/models/", {"name": "taken"}, format="json"), 409, "model_exists")


def test_a_bug_is_500_in_the_same_shape_without_internals(api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("apps.registry.selectors.model_list_visible", explode)
    api.raise_request_exception = False
    error = assert_error_shape(api.get("/api/v1/models/"), 500, "internal_error")
    assert "secret" not in error["message"]


def test_a_django_level_500_is_json_too(client, settings):
    """An error outside DRF (a plain Django view) goes through handler500."""
    settings.ROOT_URLCONF = "tests.core.crash_urls"
    client.raise_request_exception = False
    error = assert_error_shape(client.get("/crash"), 500, "internal_error")
    assert "secret" not in error["message"]


@pytest.mark.parametrize(
    ("path", "status"), [("/api/v1/predictions/", 401), ("/api/v1/nowhere/", 404), ("/crash-api", 500)]
)
def test_every_log_line_of_a_failed_request_carries_its_id(settings, log_records, path, status):
    """Django writes "Unauthorized: ..." and "Internal Server Error: ..." after the
    middleware has returned; those lines carry the request's id too."""
    settings.ROOT_URLCONF = "tests.core.crash_urls"
    client = APIClient(raise_request_exception=False)
    response = client.get(path, HTTP_X_REQUEST_ID="trace-log-1")
    assert response.status_code == status
    lines = [r for r in log_records if r.name.startswith(("django", "mlplatform"))]
    assert {r.name for r in lines} >= {"django.request", "mlplatform.request"}
    assert [(r.name, r.request_id) for r in lines if r.request_id != "trace-log-1"] == []


def test_a_supplied_request_id_is_echoed(api):
    response = api.get("/api/v1/models/nope/", HTTP_X_REQUEST_ID="trace-123")
    assert response["X-Request-ID"] == "trace-123"
    assert response.json()["error"]["request_id"] == "trace-123"


def test_an_unsafe_request_id_is_replaced(api):
    response = api.get("/api/v1/models/", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    # `$` in a regex also matches before a final newline: the whole value must match.
    response = api.get("/api/v1/models/", HTTP_X_REQUEST_ID="trace-123\n")
    assert response.status_code == 200
    assert response["X-Request-ID"] != "trace-123\n"
    assert len(response["X-Request-ID"]) == 32
