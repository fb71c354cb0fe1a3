"""The OpenAPI document tells the truth about lists (issue 18): every list operation is
called, and what it answers (a page or a plain array) is what the schema documents, with
the page's parameters. Also: tags, summaries, examples shaped like real answers, and no
integer a browser cannot hold."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from apps.accounts.services.api_keys import api_key_create
from apps.core.schema_docs import EXAMPLES
from apps.jobs.models import WebhookDelivery
from apps.oauth.models import Application
from apps.registry import services as registry
from apps.registry.models import ModelGrant
from tests.factories import MLModelFactory, UserFactory
from tests.inference.conftest import TINY_PREPROCESSING, photo, ready_version
from tests.onnx_models import tiny_classifier

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def documented_200(schema: dict, operation: dict) -> dict:
    return resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])


def is_page(node: dict) -> bool:
    return node.get("type") == "object" and "results" in node.get("properties", {})


def list_operations(schema: dict) -> list[tuple[str, dict]]:
    """GET operations of /api/v1 documented as a page or an array."""
    found = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        content = (get or {}).get("responses", {}).get("200", {}).get("content", {})
        if path.startswith("/api/v1/") and "application/json" in content:
            body = documented_200(schema, get)
            if body.get("type") == "array" or is_page(body):
                found.append((path, get))
    return found


@pytest.fixture
def world(staff_user, client_for, django_capture_on_commit_callbacks) -> dict:
    """Two of everything a list can show, made through the API and services."""
    api = client_for(staff_user)
    model = MLModelFactory(name="tiny", owner=staff_user)
    version = ready_version(
        model, tiny_classifier(), labels=["a", "b", "c"], preprocessing=TINY_PREPROCESSING
    )
    ready_version(model, tiny_classifier(seed=1), number=2, alias="staging", preprocessing=TINY_PREPROCESSING)
    registry.alias_set(model=model, name="production", version=version, user=staff_user)
    ModelGrant.objects.create(model=model, user=UserFactory(), role="consumer")
    ModelGrant.objects.create(model=model, user=UserFactory(), role="maintainer")
    MLModelFactory(name="second", owner=staff_user)
    for name in ("one", "two"):
        api_key_create(owner=staff_user, name=name, scopes=["predict"])
    for _ in range(2):
        response = api.post(
            "/api/v1/models/tiny/predict",
            {"image": SimpleUploadedFile("c.jpg", photo("coffee"), content_type="image/jpeg")},
            format="multipart",
        )
        assert response.status_code == 200, response.content
    files = [SimpleUploadedFile(f"{i}.jpg", photo("coffee"), content_type="image/jpeg") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        job = api.post("/api/v1/jobs/", {"model": "tiny", "inputs": files}, format="multipart")
    assert job.status_code == 202, job.content
    for attempt in (1, 2):
        WebhookDelivery.objects.create(
            job_id=job.json()["id"], attempt=attempt, url="https://example.com/hook"
        )
    application = Application.objects.create(
        name="ci", user=staff_user, client_type="confidential", authorization_grant_type="client-credentials"
    )
    return {
        "api": api,
        "params": {"name": "tiny", "job_id": job.json()["id"], "application_id": application.pk},
        "predict": response.json(),
        "job": job.json(),
    }


def test_every_list_operation_answers_what_the_schema_documents(schema, world):
    operations = list_operations(schema)
    assert len(operations) >= 14
    for path, operation in operations:
        url = re.sub(r"{(\w+)}", lambda m: str(world["params"][m.group(1)]), path)
        response = world["api"].get(url)
        assert response.status_code == 200, (url, response.content[:500])
        body, documented = response.json(), documented_200(schema, operation)
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if isinstance(body, list):
            assert documented.get("type") == "array", f"{url} answers an array, documented as a page"
            assert not {"limit", "offset", "cursor"} & query, url
            continue
        assert is_page(documented), f"{url} answers a page, documented as an array"
        assert set(body) == set(documented["properties"]), url
        if "count" in body:  # limit/offset pages
            assert {"limit", "offset"} <= query, url
        else:  # cursor pages
            assert {"cursor", "limit"} <= query, url
        one = world["api"].get(url, {"limit": 1}).json()
        assert len(one["results"]) == min(1, len(body["results"])), url
        if len(body["results"]) > 1:
            assert ("offset=" if "count" in body else "cursor=") in one["next"], url


def test_plain_arrays_stay_arrays(schema):
    paths = dict(list_operations(schema))
    for path in ("/api/v1/models/{name}/aliases/", "/api/v1/models/{name}/grants/"):
        assert documented_200(schema, paths[path])["type"] == "array"


def test_every_operation_has_an_area_tag_and_a_summary(schema):
    names = [tag["name"] for tag in schema["tags"]]
    assert names[:3] == ["Models", "Versions", "Aliases"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path}"
            assert operation.get("tags") and operation["tags"] != ["api"], f"{method} {path}"
            assert set(operation["tags"]) <= set(names)


def test_multipart_predict_needs_only_an_image(schema):
    body = schema["paths"]["/api/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert next(iter(body)) == "multipart/form-data"  # what "Try it out" opens on
    form = resolve(schema, body["multipart/form-data"]["schema"])
    assert "top_k" not in form.get("required", [])
    assert "default" not in form["properties"]["top_k"]


def test_a_multipart_job_needs_only_its_model(schema):
    body = schema["paths"]["/api/v1/jobs/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert resolve(schema, body["schema"])["required"] == ["model"]


def test_no_integer_bound_past_what_a_browser_holds(schema):
    text = repr(schema)
    assert "9223372036854775807" not in text and "9223372036854775808" not in text


def test_the_examples_have_the_shape_of_real_answers(schema, world):
    schemas = schema["components"]["schemas"]
    assert schemas["PredictOutput"]["example"] == EXAMPLES["PredictOutput"]
    assert set(EXAMPLES["PredictOutput"]) == set(world["predict"])
    assert set(EXAMPLES["PredictOutput"]["predictions"][0]["top_k"][0]) == set(
        world["predict"]["predictions"][0]["top_k"][0]
    )
    assert set(EXAMPLES["JobOutput"]) == set(world["job"])
    assert set(EXAMPLES["JobOutput"]["progress"]) == set(world["job"]["progress"])
    error = world["api"].get("/api/v1/models/missing/").json()
    assert set(EXAMPLES["Error"]["error"]) == set(error["error"])


def test_redoc_loads_nothing_from_elsewhere(client):
    page = client.get("/api/redoc/").content.decode()
    assert "redoc.standalone.js" in page
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", page), page


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/")
