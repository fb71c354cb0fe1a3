"""Optimizing a version: recipes run for real (ONNX Runtime's tools) on the tiny classifier."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageOps

from apps.optimization import recipes
from apps.optimization.models import OptimizationRun
from apps.optimization.services.lifecycle import optimization_run
from apps.registry.models import ModelVersion
from tests.inference.conftest import PHOTOS, encode

pytestmark = pytest.mark.django_db


def photos() -> list[bytes]:
    """The demo photos and their mirror images: ten real JPEGs."""
    images = []
    for path in sorted(PHOTOS.glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        images += [path.read_bytes(), encode(ImageOps.mirror(image), "JPEG", quality=90)]
    return images


def labelled_zip(api, name: str = "tiny") -> bytes:
    """Each photo filed under the label the fp32 model gives it (so the source scores 100 %)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, data in enumerate(photos()):
            image = SimpleUploadedFile("x.jpg", data, content_type="image/jpeg")
            response = api.post(
                f"/api/v1/models/{name}/predict?top_k=1", {"image": [image]}, format="multipart"
            )
            label = response.json()["predictions"][0]["top_k"][0]["label"]
            archive.writestr(f"set/{label}/{index}.jpg", data)
    return buffer.getvalue()


def upload_set(api, data: bytes, name: str = "eval", filename: str = "set.zip", model: str = "tiny"):
    return api.post(
        f"/api/v1/models/{model}/evaluation-sets/",
        {"name": name, "file": SimpleUploadedFile(filename, data)},
        format="multipart",
    )


def optimize(api, body: dict, model: str = "tiny", number: int = 1):
    return api.post(f"/api/v1/models/{model}/versions/{number}/optimize", body, format="json")


def run(api, response) -> dict:
    assert response.status_code == 202, response.content
    assert response["Location"] == response.json()["url"]
    optimization_run(run_id=response.json()["id"])
    return api.get(response.json()["url"]).json()


def test_dynamic_int8_makes_a_new_derived_version_with_a_report(api, tiny_version):
    assert upload_set(api, labelled_zip(api)).status_code == 201
    done = run(api, optimize(api, {"recipe": "dynamic-int8", "evaluation_set": "eval"}))
    assert done["status"] == "succeeded", done["error"]
    assert (done["source_version"], done["result_version"], done["progress"]) == (1, 2, 100)
    version = api.get("/api/v1/models/tiny/versions/2/").json()
    assert version["status"] == "ready"
    assert version["derived_from"] == 1
    report = version["optimization"]
    assert report == done["report"]
    assert report["recipe"] == "dynamic-int8"
    for side in ("source", "result"):
        perf = report["performance"][side]
        assert perf["size_bytes"] > 0 and perf["load_ms"] > 0
        assert perf["latency_p50_ms"] > 0 and perf["latency_p95_ms"] >= perf["latency_p50_ms"]
        assert perf["throughput_items_per_s"] > 0
    assert report["accuracy"]["items"] == 10
    assert report["accuracy"]["source"]["top1"] == 100.0
    assert report["accuracy"]["top1_agreement"] is not None
    assert report["gate"]["evaluated"] is True
    assert ModelVersion.objects.get(model__name="tiny", number=1).status == "ready"  # the source is untouched


def test_static_int8_calibrates_on_a_calibration_set(api, tiny_version):
    upload_set(api, labelled_zip(api))
    body = {
        "recipe": "static-int8",
        "calibration_set": "eval",
        "evaluation_set": "eval",
        "calibration_method": "entropy",
        "max_top1_drop": 100,
    }
    done = run(api, optimize(api, body))
    assert done["status"] == "succeeded", done["error"]
    assert done["params"]["calibration_method"] == "entropy"
    assert done["report"]["gate"]["passed"] is True


@pytest.mark.parametrize("recipe", ["fp16", "graph"])
def test_fp16_and_graph_recipes(api, tiny_version, recipe):
    done = run(api, optimize(api, {"recipe": recipe}))
    assert done["status"] == "succeeded", done["error"]
    report = done["report"]
    assert report["gate"] == {**report["gate"], "evaluated": False, "passed": True}
    if recipe == "fp16":  # float16 inside, float32 at the edges: clients send the same input
        signature = api.get("/api/v1/models/tiny/versions/2/").json()["signature"]
        assert signature["inputs"][0]["dtype"] == "float"  # ONNX type name of float32


def test_a_result_beyond_the_accuracy_gate_is_kept_but_failed_and_only_an_admin_can_force_an_alias(
    api, tiny_version, monkeypatch, staff_user
):
    from rest_framework.test import APIClient

    from tests.onnx_models import tiny_classifier

    upload_set(api, labelled_zip(api))

    def a_worse_model(recipe, source, target, **kwargs):  # stands in for a quantizer that hurt accuracy
        target.write_bytes(tiny_classifier(seed=7))

    monkeypatch.setattr(recipes, "apply", a_worse_model)
    done = run(api, optimize(api, {"recipe": "dynamic-int8", "evaluation_set": "eval", "max_top1_drop": 0}))
    assert done["status"] == "succeeded"
    gate = done["report"]["gate"]
    assert gate["passed"] is False and gate["top1_drop"] > 0
    version = api.get("/api/v1/models/tiny/versions/2/").json()
    assert (version["status"], version["failure_code"]) == ("failed", "accuracy_gate")
    assert "beyond the allowed 0.0" in version["status_reason"]

    response = api.put("/api/v1/models/tiny/aliases/production/", {"version": 2}, format="json")
    assert response.status_code == 409
    response = api.put(
        "/api/v1/models/tiny/aliases/production/", {"version": 2, "force": True}, format="json"
    )
    assert response.status_code == 403
    admin = APIClient()
    admin.force_authenticate(staff_user)
    response = admin.put(
        "/api/v1/models/tiny/aliases/production/", {"version": 2, "force": True}, format="json"
    )
    assert response.status_code == 200, response.content
    image = SimpleUploadedFile("x.jpg", photos()[0], content_type="image/jpeg")
    served = api.post("/api/v1/models/tiny/predict", {"image": [image]}, format="multipart")
    assert served.status_code == 200 and served.json()["version"] == 2


def test_optimizing_a_version_that_is_not_ready_is_409(api, tiny_version):
    tiny_version.status = "pending"
    tiny_version.save()
    response = optimize(api, {"recipe": "dynamic-int8"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "version_not_ready"


def test_an_unknown_recipe_is_400(api, tiny_version):
    response = optimize(api, {"recipe": "int4-magic"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_recipe"
    assert error["details"]["recipes"] == list(recipes.RECIPES)


def test_static_quantization_without_a_calibration_set_is_400(api, tiny_version):
    response = optimize(api, {"recipe": "static-int8"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "calibration_set_required"
    response = optimize(api, {"recipe": "static-int8", "calibration_set": "nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "evaluation_set_not_found"


def test_an_evaluation_set_with_labels_the_model_does_not_have_is_422(api, tiny_version):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/1.jpg", photos()[0])
        archive.writestr("zebra/2.jpg", photos()[1])
    response = upload_set(api, buffer.getvalue())
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["details"]["unknown_labels"]) == ("unknown_labels", ["zebra"])
    lines = json.dumps({"inputs": {"input": [[[[0.0] * 8] * 8] * 3]}, "label": "q"}).encode()
    assert upload_set(api, lines, filename="set.jsonl").json()["error"]["code"] == "unknown_labels"


def test_a_corrupt_or_empty_evaluation_set_is_400(api, tiny_version):
    response = upload_set(api, b"PK\x03\x04 not really a zip")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_archive")
    response = upload_set(api, b"not json\n", filename="x.jsonl")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_evaluation_set")
    response = upload_set(api, photos()[0], filename="photo.jpg")  # not UTF-8
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_evaluation_set")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/readme.txt", b"no images here")
    response = upload_set(api, buffer.getvalue())
    assert (response.status_code, response.json()["error"]["code"]) == (400, "empty_evaluation_set")


def test_when_the_tools_fail_the_run_fails_with_their_reason_and_the_source_is_untouched(api, tensor_version):
    # Calibration inputs ONNX Runtime refuses (an image for a two-input tensor model).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x/1.jpg", photos()[0])
    assert upload_set(api, buffer.getvalue(), name="cal", model="doubler").status_code == 201
    done = run(api, optimize(api, {"recipe": "static-int8", "calibration_set": "cal"}, model="doubler"))
    assert done["status"] == "failed"
    assert done["error"]["code"] == "optimization_failed"
    assert "ONNXRuntimeError" in done["error"]["message"] or "input" in done["error"]["message"].lower()
    assert done["result_version"] is None
    assert list(ModelVersion.objects.filter(model__name="doubler").values_list("number", "status")) == [
        (1, "ready")
    ]


def test_runs_are_listed_and_hidden_from_other_users(api, tiny_version, key_client, other_user):
    run_id = optimize(api, {"recipe": "graph"}).json()["id"]
    assert [r["id"] for r in api.get("/api/v1/models/tiny/optimizations/").json()["results"]] == [run_id]
    assert api.get(f"/api/v1/optimizations/{run_id}/").json()["status"] == "queued"
    other = key_client(owner=other_user)
    assert other.get(f"/api/v1/optimizations/{run_id}/").status_code == 404
    assert OptimizationRun.objects.count() == 1


def test_admin_pages_show_runs_reports_and_sets(api, tiny_version, client, staff_user):
    upload_set(api, labelled_zip(api))
    run_id = run(api, optimize(api, {"recipe": "dynamic-int8", "evaluation_set": "eval"}))["id"]
    client.force_login(staff_user)
    page = client.get(f"/admin/optimization/optimizationrun/{run_id}/change/")
    assert page.status_code == 200 and b"top1_agreement" in page.content
    assert client.get("/admin/optimization/optimizationrun/").status_code == 200
    assert client.get("/admin/optimization/evaluationset/").status_code == 200
    version = ModelVersion.objects.get(model__name="tiny", number=2)
    page = client.get(f"/admin/registry/modelversion/{version.pk}/change/")
    assert page.status_code == 200 and b"latency_ratio_p50" in page.content


def test_a_result_whose_run_failed_before_the_gate_cannot_take_an_alias(api, tiny_version, monkeypatch):
    from apps.optimization.services import execution

    def breaks(*args, **kwargs):
        raise RuntimeError("the evaluation machine caught fire")

    monkeypatch.setattr(execution, "optimization_report", breaks)
    done = run(api, optimize(api, {"recipe": "graph"}))
    assert done["status"] == "failed" and done["result_version"] == 2
    version = ModelVersion.objects.get(model__name="tiny", number=2)
    assert (version.status, version.failure_code) == ("failed", "not_evaluated")
    response = api.put("/api/v1/models/tiny/aliases/production/", {"version": 2}, format="json")
    assert response.status_code == 409


def test_a_tar_evaluation_set_in_any_compression_is_read(api, tiny_version):
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as archive:
        data = photos()[0]
        info = tarfile.TarInfo("a/0.jpg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    response = upload_set(api, buffer.getvalue(), filename="set.tar.bz2")
    assert response.status_code == 201, response.content
    assert (response.json()["kind"], response.json()["summary"]["items"]) == ("images", 1)


def test_the_optimize_command_refuses_an_unknown_set(tiny_version):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no evaluation set 'nope'"):
        call_command(
            "optimize", "--model", "tiny", "--number", "1", "--recipe", "graph", "--evaluation-set", "nope"
        )


def test_a_result_is_not_aliasable_until_gated_and_a_retry_gates_it(api, tiny_version, monkeypatch, settings):
    import datetime as dt

    from django.utils import timezone

    from apps.optimization.services import execution

    real_report = execution.optimization_report

    def worker_dies(*args, **kwargs):
        raise SystemExit("killed while evaluating")

    monkeypatch.setattr(execution, "optimization_report", worker_dies)
    run_id = optimize(api, {"recipe": "graph"}).json()["id"]
    with pytest.raises(SystemExit):
        optimization_run(run_id=run_id)
    version = ModelVersion.objects.get(model__name="tiny", number=2)
    assert (version.status, version.failure_code) == ("failed", "not_evaluated")
    assert (
        api.put("/api/v1/models/tiny/aliases/production/", {"version": 2}, format="json").status_code == 409
    )

    monkeypatch.setattr(execution, "optimization_report", real_report)
    OptimizationRun.objects.filter(pk=run_id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert optimization_run(run_id=run_id) == "succeeded"  # the retry gates the registered result
    assert ModelVersion.objects.filter(model__name="tiny").count() == 2
    assert ModelVersion.objects.get(model__name="tiny", number=2).status == "ready"


def test_a_run_out_of_attempts_leaves_its_result_unaliasable(api, tiny_version, monkeypatch, settings):
    import datetime as dt

    from django.utils import timezone

    from apps.optimization.services import execution

    settings.OPTIMIZATION_MAX_ATTEMPTS = 1
    monkeypatch.setattr(
        execution, "optimization_report", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed"))
    )
    run_id = optimize(api, {"recipe": "graph"}).json()["id"]
    with pytest.raises(SystemExit):
        optimization_run(run_id=run_id)
    OptimizationRun.objects.filter(pk=run_id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert optimization_run(run_id=run_id) == "failed"
    assert OptimizationRun.objects.get(pk=run_id).error_code == "attempts_exhausted"
    version = ModelVersion.objects.get(model__name="tiny", number=2)
    assert (version.status, version.failure_code) == ("failed", "not_evaluated")


def test_a_worker_that_lost_its_run_to_another_does_not_overwrite_it(api, tiny_version, monkeypatch):
    from apps.optimization.services import execution

    real_report = execution.optimization_report

    def taken_over(run, *args):
        OptimizationRun.objects.filter(pk=run.pk).update(lease_token="someone-else")
        return real_report(run, *args)

    monkeypatch.setattr(execution, "optimization_report", taken_over)
    run_id = optimize(api, {"recipe": "graph"}).json()["id"]
    optimization_run(run_id=run_id)
    run = OptimizationRun.objects.get(pk=run_id)
    assert (run.status, run.lease_token) == ("running", "someone-else")
