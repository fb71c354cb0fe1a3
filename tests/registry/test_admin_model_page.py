"""The model page a maintainer works from, and the console's index (issue 18)."""

import pytest

from apps.registry import services
from apps.registry.models import ModelAlias, ModelAliasHistory, ModelVersion
from tests.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

SIGNATURE = {
    "inputs": [{"name": "images", "dtype": "float", "shape": [-1, 3, 224, 224]}],
    "outputs": [{"name": "logits", "dtype": "float", "shape": [-1, 1000]}],
}


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def model(staff_user):
    model = MLModelFactory(name="resnet", owner=staff_user)
    ready = ModelVersionFactory(
        model=model,
        number=1,
        size_bytes=5 * 1024 * 1024,
        signature=SIGNATURE,
        metrics={"latency_ms": {"p50": 4.25, "p95": 6.5}, "opsets": {"ai.onnx": 17}},
    )
    ModelVersionFactory(
        model=model, number=2, status="failed", failure_code="runtime_load_failed", status_reason="bad op"
    )
    ModelVersionFactory(model=model, number=3, status="validating", derived_from=ready)
    services.alias_set(model=model, name="production", version=ready, user=None)
    return model


def test_the_model_page_lists_versions_aliases_and_history(admin_client, model):
    page = admin_client.get(f"/admin/registry/mlmodel/{model.pk}/change/").content.decode()
    assert page.count('<tr id="version-') == 3
    assert "5.0 MiB" in page and "4.25 ms" in page
    assert "runtime_load_failed: bad op" in page  # the failure reason in the list
    assert "v1" in page and "production" in page
    assert 'data-moving="1"' in page and "registry/version-status" in page  # v3 is polled
    assert "?model_name=resnet&amp;version_number=1" in page  # to its predictions and jobs
    history = page.split('id="alias-history"')[1]
    assert "set" in history and "v1" in history


def test_the_polling_endpoint_answers_rows_and_statuses(admin_client, model):
    body = admin_client.get(f"/admin/registry/mlmodel/{model.pk}/versions.json").json()
    statuses = {row["status"]: row["moving"] for row in body["versions"]}
    assert statuses == {"ready": False, "failed": False, "validating": True}
    assert all(row["html"].startswith("<tr id=") for row in body["versions"])


def test_the_polling_endpoint_is_for_staff_only(client, user, model):
    client.force_login(user)
    response = client.get(f"/admin/registry/mlmodel/{model.pk}/versions.json")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_alias_is_set_from_a_version_row(admin_client, model):
    second = ModelVersionFactory(model=model, number=4)
    response = admin_client.post(
        f"/admin/registry/mlmodel/{model.pk}/set-alias/",
        {"version": second.pk, "alias": "production"},
        follow=True,
    )
    assert b"Alias production of resnet now points at version 4" in response.content
    assert ModelAlias.objects.get(model=model, name="production").version == second
    assert ModelAliasHistory.objects.first().action == "move"


def test_an_alias_to_a_failed_version_is_refused_from_the_row(admin_client, model):
    failed = model.versions.get(number=2)
    response = admin_client.post(
        f"/admin/registry/mlmodel/{model.pk}/set-alias/",
        {"version": failed.pk, "alias": "staging"},
        follow=True,
    )
    assert b"an alias can only point at a ready version" in response.content
    assert not ModelAlias.objects.filter(name="staging").exists()


def test_a_version_is_archived_from_its_row_unless_an_alias_holds_it(admin_client, model):
    failed = model.versions.get(number=2)
    admin_client.post(f"/admin/registry/mlmodel/{model.pk}/archive/", {"version": failed.pk})
    assert ModelVersion.objects.get(pk=failed.pk).status == "archived"
    held = model.versions.get(number=1)
    response = admin_client.post(
        f"/admin/registry/mlmodel/{model.pk}/archive/", {"version": held.pk}, follow=True
    )
    assert b"move them first" in response.content
    assert ModelVersion.objects.get(pk=held.pk).status == "ready"


def test_the_model_list_shows_the_production_version(admin_client, model):
    page = admin_client.get("/admin/registry/mlmodel/").content.decode()
    assert '<td class="field-production">v1</td>' in page
    assert '<td class="field-versions_count">3</td>' in page


def test_the_version_page_shows_the_signature_and_metrics_as_tables(admin_client, model):
    version = model.versions.get(number=1)
    page = admin_client.get(f"/admin/registry/modelversion/{version.pk}/change/").content.decode()
    assert "<td>images</td><td>float</td><td>[-1, 3, 224, 224]</td>" in page
    assert "<th>latency_ms.p50</th><td>4.25</td>" in page


def test_the_version_upload_form_opens_on_the_model_and_returns_to_it(admin_client, model):
    page = admin_client.get(f"/admin/registry/modelversion/add/?model={model.pk}").content.decode()
    assert f'<option value="{model.pk}" selected>' in page


def test_the_model_form_proposes_its_owner(admin_client, staff_user):
    page = admin_client.get("/admin/registry/mlmodel/add/").content.decode()
    assert f'<option value="{staff_user.pk}" selected>' in page


def test_the_index_names_the_console_puts_the_registry_first_and_links_the_docs(admin_client, settings):
    settings.GRAFANA_URL = "http://grafana.example/d/mlplatform"
    page = admin_client.get("/admin/").content.decode()
    assert "mlplatform console" in page
    sections = [part.split('"')[0].split()[0] for part in page.split('class="app-')[1:]]
    assert sections[0] == "registry"
    assert sections.index("registry") < sections.index("inference") < sections.index("auth")
    assert 'href="/api/docs/"' in page and 'href="http://grafana.example/d/mlplatform"' in page


def test_the_index_has_no_grafana_link_unless_configured(admin_client, settings):
    settings.GRAFANA_URL = ""
    assert b"Grafana" not in admin_client.get("/admin/").content
