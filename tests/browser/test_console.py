"""A maintainer's day in the console and the API docs, in Chromium (issue 18).

The journey is one test because each step needs the one before it (a model, then its
versions, aliases, traffic and a key); Swagger UI runs in a second, fresh context, so the
API key, not the console's session, is what authorizes its request."""

import json
import re
from pathlib import Path

import pytest
import requests

from tests import onnx_models
from tests.browser.conftest import PASSWORD
from tests.live import DEMO, ROOT, wait_for

pytestmark = pytest.mark.e2e

COFFEE = ROOT / "demo" / "images" / "coffee.jpg"
MODEL = "efficientnet-lite0"  # the name the API docs' examples use

TINY_PREPROCESSING = {"resize": 8, "crop": 8, "mean": [127.0], "std": [128.0], "softmax": True}


def status_of(page, number: int):
    return page.locator("tr[data-version]", has=page.locator(f"a:text-is('v{number}')")).locator(
        ".mlp-status"
    )


def upload_version(page, model_id: int, file: Path, labels: Path, preprocessing: str) -> None:
    page.goto(f"/admin/registry/mlmodel/{model_id}/change/")
    page.click("text=Upload a version")
    assert page.locator("#id_model").input_value() == str(model_id)  # pre-selected
    page.set_input_files("#id_file", str(file))
    page.set_input_files("#id_labels_file", str(labels))
    page.fill("#id_preprocessing_json", preprocessing)
    page.click("input[name=_save]")
    page.wait_for_url(f"**/admin/registry/mlmodel/{model_id}/change/")


def set_alias_from_row(page, number: int, alias: str) -> None:
    row = page.locator("tr[data-version]", has=page.locator(f"a:text-is('v{number}')"))
    row.locator("input[name=alias]").fill(alias)
    row.locator("button:text-is('Set alias')").click()
    page.wait_for_selector(f"text=Alias {alias} of {MODEL} now points at version {number}")


def traffic(url: str) -> tuple[int, str]:
    """A prediction and a finished two-image job, through the API as a client makes them."""
    token = requests.post(
        f"{url}/api/v1/auth/token/", json={"username": "maintainer", "password": PASSWORD}, timeout=10
    ).json()["access"]
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    with COFFEE.open("rb") as photo:
        predicted = http.post(f"{url}/api/v1/models/{MODEL}/predict", files={"image": photo}, timeout=60)
    assert predicted.status_code == 200, predicted.text
    photos = [("inputs", (f"{i}.jpg", COFFEE.read_bytes(), "image/jpeg")) for i in range(2)]
    job = http.post(f"{url}/api/v1/jobs/", data={"model": MODEL}, files=photos, timeout=60).json()
    wait_for(
        lambda: http.get(f"{url}/api/v1/jobs/{job['id']}/", timeout=10).json()["status"] == "succeeded",
        90,
        "the job to finish",
    )
    return predicted.json()["predictions"][0]["top_k"][0]["label"], job["id"]


def test_a_maintainer_publishes_a_model_and_calls_it_from_the_api_docs(page, browser, login, stack, tmp_path):
    login(page)
    # The index: named, the registry first, the API docs one click away.
    assert page.locator("#site-name").inner_text() == "mlplatform console"
    assert "app-registry" in page.locator("#content-main div[class*='app-']").first.get_attribute("class")
    assert page.locator("#console-links a", has_text="API docs").count() == 1

    # A model, its owner pre-filled.
    page.goto("/admin/registry/mlmodel/add/")
    assert page.locator("#id_owner").input_value() != ""
    page.fill("#id_name", MODEL)
    page.select_option("#id_visibility", "internal")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r".*/admin/registry/mlmodel/\d+/change/$"))
    model_id = int(page.url.rstrip("/").split("/")[-2])

    # A version, pending while no worker runs; it becomes ready on the page, not by a reload.
    preprocessing = (DEMO / "preprocessing.json").read_text()
    upload_version(page, model_id, DEMO / "model.onnx", DEMO / "labels.txt", preprocessing)
    assert status_of(page, 1).inner_text() == "pending"
    page.evaluate("window.stayed = true")
    stack["start_worker"]()
    page.locator("tr[data-version] .mlp-status-ready").wait_for(timeout=120_000)
    assert status_of(page, 1).inner_text() == "ready"
    assert page.evaluate("window.stayed") is True
    assert page.locator("tr[data-version] td").nth(3).inner_text().endswith(" ms")  # p50

    # Aliases from the version's row, and a move through the alias form's Save and continue.
    set_alias_from_row(page, 1, "production")
    set_alias_from_row(page, 1, "staging")
    tiny = tmp_path / "tiny.onnx"
    tiny.write_bytes(onnx_models.tiny_classifier())
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    upload_version(page, model_id, tiny, labels, json.dumps(TINY_PREPROCESSING))
    page.locator("tr[data-version][data-status=ready]").nth(1).wait_for(timeout=60_000)
    assert status_of(page, 2).inner_text() == "ready"
    page.goto("/admin/registry/modelalias/")
    page.click(f"text={MODEL}@staging")
    page.select_option("#id_version", label=f"{MODEL} v2")
    page.click("input[name=_continue]")
    page.wait_for_selector("text=was changed successfully")
    assert "/None/" not in page.url and page.locator("#id_version").count() == 1

    # The history, on the model's page.
    page.goto(f"/admin/registry/mlmodel/{model_id}/change/")
    history = page.locator("#alias-history tbody tr")
    assert [row.locator("td").nth(2).inner_text() for row in history.all()] == ["move", "set", "set"]
    assert history.first.locator("td").nth(4).inner_text() == "v2"

    # A prediction and a job, reached from the version's row.
    label, job_id = traffic(stack["url"])
    assert label == "espresso"
    page.goto(f"/admin/registry/mlmodel/{model_id}/change/")
    row = page.locator("tr[data-version]", has=page.locator("a:text-is('v1')"))
    row.locator("a:text-is('predictions')").click()
    page.locator("#result_list tbody tr th a").first.click()
    assert re.search(r"\d{4}", page.locator(".field-created_at .readonly").inner_text())
    page.goto(f"/admin/registry/mlmodel/{model_id}/change/")
    row = page.locator("tr[data-version]", has=page.locator("a:text-is('v1')"))
    row.locator("a:text-is('jobs')").click()
    page.click(f"a:text-is('{job_id}')")
    assert "2 / 2" in page.locator(".field-progress_bar").inner_text()
    assert page.locator("input[name=_save]").count() == 0  # read-only: nothing to save

    # The lists' key columns are on screen at 1400 px.
    for url, columns in [
        ("/admin/jobs/batchjob/", ["status_badge", "progress_bar", "attempts"]),
        ("/admin/inference/prediction/", ["status", "error_code", "latency_ms"]),
    ]:
        page.goto(url)
        # The table scrolls inside its box; a column past the box's right edge is off-screen.
        visible = page.locator("#changelist .results").bounding_box()
        for column in columns:
            box = page.locator(f"#result_list th.column-{column}").bounding_box()
            assert box and box["x"] + box["width"] <= visible["x"] + visible["width"] <= 1400, (url, column)

    # An API key, its secret shown once.
    page.goto("/admin/accounts/apikey/add/")
    page.fill("#id_name", "swagger")
    page.check("input[name=scopes][value=predict]")
    page.click("input[name=_save]")
    key = page.locator("#api-key-secret").input_value()
    assert key.startswith("mlp_")

    # Swagger UI in a fresh context (no console session): Authorize with the key, then
    # "Try it out" on predict with only a photo chosen.
    docs = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=stack["url"])
    try:
        swagger = docs.new_page()
        watch = page.watch
        docs.route("**/*", watch.route)
        swagger.on("console", watch.console)
        swagger.on("pageerror", lambda error: watch.problems.append(f"uncaught exception: {error}"))
        swagger.on("requestfailed", watch.request_failed)
        predict_from_swagger(swagger, key)
        # ReDoc renders the same schema with nothing from another host (no web fonts, no logo).
        swagger.goto("/api/redoc/")
        swagger.locator("h1", has_text="mlplatform API").wait_for(timeout=60_000)
        assert swagger.locator("text=List models").count() >= 1  # the operations' summaries
    finally:
        docs.close()


def predict_from_swagger(swagger, key: str) -> None:
    swagger.goto("/api/docs/")
    swagger.click("button.authorize")
    scheme = swagger.locator(".auth-container", has_text="apiKeyAuth")
    scheme.locator("input").fill(key)
    scheme.locator("button.authorize").click()
    swagger.click("button.btn-done")
    operation = swagger.locator("#operations-Predictions-models_predict")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("input[type=file]").first.set_input_files(str(COFFEE))
    operation.locator("button.execute").click()
    response = operation.locator(".live-responses-table .response").first
    response.wait_for(timeout=60_000)
    assert response.locator(".response-col_status").inner_text().strip().startswith("200")
    assert "espresso" in response.locator(".response-col_description").inner_text()
