"""NUL characters and lone surrogates are refused in one place, for every route: the path and
the query string by CleanTextMiddleware, form fields, file names and JSON strings by the
parsing layer (apps/core/negotiation.py), uploaded labels where they become text. Each
answers 400 invalid_text in the one error shape; binary bodies are not text and pass."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.text import is_clean_text
from apps.registry.models import ModelVersion
from tests.factories import MLModelFactory, ModelVersionFactory, UserFactory
from tests.onnx_models import tiny_classifier

pytestmark = pytest.mark.django_db


def assert_invalid_text(response, where: str = "") -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_text"
    assert where in error["details"]["where"]
    assert error["request_id"]


@pytest.fixture
def model(user):
    model = MLModelFactory(name="m", owner=user)
    ModelVersionFactory(model=model, status=ModelVersion.Status.READY)
    return model


def test_the_text_rule():
    assert is_clean_text("plain") and is_clean_text("étiquette 🙂")
    assert not is_clean_text("a\x00b")
    assert not is_clean_text("a\ud800b")  # a lone surrogate, as a JSON escape decodes it


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/models/m/versions/?status=%00",
        "/api/v1/models/m/alias-history/?alias=%00",
        "/api/v1/models/m/alias-history/?a%00b=1",
        "/api/v1/jobs/?model=x%00",
        "/api/v1/predictions/?model=%00",
    ],
)
def test_a_nul_in_a_query_string_is_400(api, model, url):
    assert_invalid_text(api.get(url), "query parameter")


def test_a_nul_in_a_grants_username_is_400(api, model):
    response = api.put("/api/v1/models/m/grants/a%00b/", {"role": "consumer"}, format="json")
    assert_invalid_text(response, "path")


def test_a_nul_in_the_path_is_400_for_anonymous_callers_too(client):
    assert_invalid_text(client.get("/api/v1/models/a%00b/"), "path")


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_a_json_string_or_key_with_nul_or_a_lone_surrogate_is_400(api, model, text):
    body = json.dumps({"description": text})  # written as the escapes \\u0000 and \\ud800
    response = api.patch("/api/v1/models/m/", body, content_type="application/json")
    assert_invalid_text(response, "JSON")
    body = json.dumps({"description": "fine", text: 1})
    assert_invalid_text(api.patch("/api/v1/models/m/", body, content_type="application/json"), "JSON")


def test_a_raw_nul_inside_a_json_string_is_400(api, model):
    """JSON itself forbids raw control characters in strings (even the lenient parser's)."""
    number = model.versions.get().number
    body = b'{"inputs": {"x": [[1.0]]}, "top_k": 1, "junk": "a\x00b"}'
    response = api.post(f"/api/v1/models/m/predict?version={number}", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_a_surrogate_pair_is_ordinary_text(api, model):
    body = json.dumps({"description": "emoji \U0001f642"})  # the escape pair \\ud83d\\ude42
    response = api.patch("/api/v1/models/m/", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "emoji \U0001f642"


def test_a_nul_in_a_multipart_form_field_is_400(api, model):
    response = api.post(
        "/api/v1/models/m/versions/",
        {"file": SimpleUploadedFile("m.onnx", tiny_classifier()), "notes": "a\x00b"},
        format="multipart",
    )
    assert_invalid_text(response, "form field 'notes'")
    assert not ModelVersion.objects.filter(notes__startswith="a").exists()


def test_a_nul_in_a_urlencoded_form_field_is_400(api, model):
    response = api.post(
        "/api/v1/models/m/versions/", "notes=a%00b", content_type="application/x-www-form-urlencoded"
    )
    assert_invalid_text(response, "form field 'notes'")


@pytest.mark.parametrize(
    "labels",
    [b"cat\ndo\x00g\n", b'["cat", "do\\u0000g"]', b'["cat", "do\\ud800g"]'],
    ids=["nul-in-text", "nul-escape-in-json", "lone-surrogate-escape-in-json"],
)
def test_a_labels_file_with_a_nul_or_a_lone_surrogate_is_400(api, model, labels):
    response = api.post(
        "/api/v1/models/m/versions/",
        {
            "file": SimpleUploadedFile("m.onnx", tiny_classifier()),
            "labels": SimpleUploadedFile("labels.txt", labels, content_type="text/plain"),
        },
        format="multipart",
    )
    assert_invalid_text(response, "label")
    assert model.versions.count() == 1


def test_labels_sent_as_json_with_a_nul_are_400(api, model):
    version = model.versions.get()
    body = json.dumps({"labels": ["a", "b\x00"]})
    response = api.patch(
        f"/api/v1/models/m/versions/{version.number}/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_text", "invalid_input")


def test_binary_bodies_are_not_text(api, model):
    """A raw image body with NUL bytes is an image, not text: it reaches the model's checks."""
    number = model.versions.get().number
    response = api.post(
        f"/api/v1/models/m/predict?version={number}", b"\x00\x00\xff\xd8", content_type="image/jpeg"
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] != "invalid_text"


def test_the_rule_holds_for_other_users_routes_too(client_for, model):
    stranger = client_for(UserFactory(username="stranger"))
    assert_invalid_text(stranger.get("/api/v1/models/?search=%00"), "query parameter")


def test_the_open_inference_protocol_doors_answer_in_their_own_shape(api, model):
    response = api.get("/v2/models/m%00x/ready")
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and "NUL" in response.json()["error"]
