"""The schema lists the error answers each operation really gives (apps/core/schema_errors.py);
the fuzzing stage (tests/fuzz/) checks every status it sees against it."""

import pytest
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def responses(schema, method: str, path: str) -> set[str]:
    return set(schema["paths"][path][method]["responses"])


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/auth/token/verify/"]
)
def test_token_endpoints_document_their_errors(schema, path):
    assert {"200", "400", "401", "429"} <= responses(schema, "post", path)


def test_the_webhook_secret_documents_all_its_answers(schema):
    assert {"200", "401", "403", "429"} <= responses(schema, "get", "/api/v1/me/webhook-secret/")
    assert {"200", "400", "401", "403", "429"} <= responses(schema, "post", "/api/v1/me/webhook-secret/")


def test_a_grant_documents_its_409(schema):
    assert "409" in responses(schema, "put", "/api/v1/models/{name}/grants/{username}/")


def test_every_authenticated_operation_documents_the_failed_authentication_429(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if any(operation.get("security", [])):
                entry = operation["responses"]["429"]
                assert "Retry-After" in entry["headers"], (method, path)
                shape = "OipError" if path.startswith("/v2") else "Error"
                assert entry["content"]["application/json"]["schema"] == {
                    "$ref": f"#/components/schemas/{shape}"
                }


def test_every_operation_documents_the_400_of_bad_text_and_the_404_of_its_path(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "400" in operation["responses"], (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= set(operation["responses"]), (method, path)


def test_a_grant_to_the_owner_is_the_documented_409(api, user):
    from tests.factories import MLModelFactory

    MLModelFactory(name="m", owner=user)
    response = api.put(f"/api/v1/models/m/grants/{user.username}/", {"role": "consumer"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "grant_to_owner"


def test_a_token_endpoints_400_and_401_are_real(client):
    assert client.post("/api/v1/auth/token/", {}, content_type="application/json").status_code == 400
    wrong = {"username": "nobody", "password": "wrong"}
    assert client.post("/api/v1/auth/token/", wrong, content_type="application/json").status_code == 401


def test_json_operations_are_documented_with_json_only_and_uploads_keep_multipart(schema):
    content = schema["paths"]["/api/v1/models/"]["post"]["requestBody"]["content"]
    assert list(content) == ["application/json"]
    predict = schema["paths"]["/api/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/*"} <= set(predict)
    versions = schema["paths"]["/api/v1/models/{name}/versions/"]["post"]["requestBody"]["content"]
    assert list(versions) == ["multipart/form-data"]


def test_a_cursor_pages_404_is_documented(schema, api):
    assert "404" in responses(schema, "get", "/api/v1/predictions/")
    assert api.get("/api/v1/predictions/?cursor=%0D9").status_code == 404


def test_every_operation_documents_the_servers_own_414_and_431(schema):
    """gunicorn refuses a request line over 4094 bytes and a header over 8190 before Django
    (tests/fuzz/ sends both to a live server); the answer is its HTML page."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("414", "431"):
                assert list(operation["responses"][status]["content"]) == ["text/html"], (method, path)
