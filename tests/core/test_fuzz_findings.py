"""What the fuzzing stage (tests/fuzz/) found, each pinned by a test: paging parameters that
are not one whole number, a version status outside its enum, the protocol's 404 shape under
/v2, a user without an e-mail address, a webhook-secret body that is not JSON."""

import pytest

from tests.factories import MLModelFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("query", ["offset=null", "offset=1&offset=2", "limit=x", "limit=1.5"])
def test_a_paging_parameter_that_is_not_one_whole_number_is_400(api, query):
    response = api.get(f"/api/v1/models/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_input"


def test_a_cursor_pages_limit_is_checked_too(api):
    assert api.get("/api/v1/predictions/?limit=abc").status_code == 400


def test_ordinary_paging_still_works(api):
    assert api.get("/api/v1/models/?limit=10&offset=0").status_code == 200
    assert api.get("/api/v1/models/?limit=-3").status_code == 200  # an integer: the default page


def test_a_version_status_outside_the_enum_is_400(api, user):
    MLModelFactory(name="m", owner=user)
    response = api.get("/api/v1/models/m/versions/?status=AAA")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["details"]
    assert api.get("/api/v1/models/m/versions/?status=ready").status_code == 200


def test_an_unknown_v2_path_answers_in_the_protocols_shape(api):
    response = api.get("/v2/models/%C2%84")
    assert response.status_code == 404
    assert isinstance(response.json()["error"], str)


def test_me_with_no_email_matches_the_schema(client_for):
    from drf_spectacular.generators import SchemaGenerator

    from tests.factories import UserFactory

    body = client_for(UserFactory(username="no-mail", email="")).get("/api/v1/me/").json()
    assert body["email"] == ""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "format" not in schema["components"]["schemas"]["MeOutput"]["properties"]["email"]


def test_the_webhook_secret_takes_json_only(api):
    response = api.post(
        "/api/v1/me/webhook-secret/", b"True--x--\r\n", content_type="multipart/form-data; boundary=x"
    )
    assert response.status_code == 415


@pytest.mark.parametrize("value", [0, 1.5, True, ["m"], {"a": 1}])
def test_a_json_number_or_other_non_text_for_a_text_field_is_400(api, value):
    response = api.post("/api/v1/models/", {"name": value}, format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()["error"]["details"]


def test_text_fields_still_take_text_and_form_values(api):
    assert api.post("/api/v1/models/", {"name": "m0"}, format="json").status_code == 201
    assert api.post("/api/v1/models/", {"name": "m1"}, format="multipart").status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/jobs/?until=",
        "/api/v1/jobs/?status=",
        "/api/v1/predictions/?since=",
        "/api/v1/predictions/?status=",
        "/api/v1/jobs/?status=running&status=failed",
    ],
)
def test_an_empty_or_repeated_filter_is_400_not_ignored(api, url):
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_input"


def test_an_empty_version_status_is_400(api, user):
    MLModelFactory(name="m", owner=user)
    assert api.get("/api/v1/models/m/versions/?status=").status_code == 400


@pytest.mark.parametrize("value", [0, 1, "yes"])
def test_a_json_boolean_field_takes_true_or_false_only(api, user, value):
    from apps.accounts.models import ApiKey  # noqa: F401  (the app is loaded)

    body = {"name": "app", "client_type": "confidential", "grant_type": "client_credentials"}
    body["scopes"] = ["predict"]
    created = api.post("/api/v1/oauth/applications/", body, format="json")
    assert created.status_code == 201, created.content
    url = f"/api/v1/oauth/applications/{created.json()['id']}/"
    assert api.patch(url, {"disabled": value}, format="json").status_code == 400
    assert api.patch(url, {"disabled": False}, format="json").status_code == 200
