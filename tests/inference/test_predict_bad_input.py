"""Every kind of bad prediction input: a clear 4xx, never a 500, recorded once a version is known."""

import base64
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.accounts.models import QuotaUsage
from apps.inference.models import Prediction
from apps.jobs.models import JobItem
from apps.registry.models import ModelVersion
from tests.core.test_errors import assert_error_shape
from tests.inference.conftest import encode, photo

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/tiny/predict"


def small_png() -> bytes:
    return encode(Image.new("RGB", (16, 16), "white"), "PNG")


def post_image(client, data: bytes, query: str = "", **headers):
    files = {"image": [SimpleUploadedFile("x", data)]}
    return client.post(f"{URL}{query}", files, format="multipart", **headers)


def assert_failed_and_recorded(response, status: int, code: str) -> dict:
    """The one error shape, and one failed audit row with the same code and request id."""
    error = assert_error_shape(response, status, code)
    row = Prediction.objects.get()
    assert (row.status, row.error_code) == ("failed", code)
    assert row.request_id == response["X-Request-ID"]
    return error


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's header)."""
    data = bytearray(small_png())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_a_file_that_is_not_an_image_is_422(api, tiny_version):
    assert_failed_and_recorded(post_image(api, b"%PDF-1.4 not an image"), 422, "invalid_image")


def test_a_truncated_jpeg_is_422(api, tiny_version):
    error = assert_failed_and_recorded(post_image(api, photo("coffee")[:5000]), 422, "invalid_image")
    assert error["details"]["index"] == 0


def test_a_decompression_bomb_is_413_before_decoding(api, tiny_version):
    error = assert_failed_and_recorded(post_image(api, forged_png(100_000, 100_000)), 413, "image_too_large")
    assert error["details"]["width"] == 100_000


def test_the_pixel_limit_is_a_setting(api, tiny_version, settings):
    settings.MAX_IMAGE_PIXELS = 100
    assert_failed_and_recorded(post_image(api, small_png()), 413, "image_too_large")


def assert_became_a_job(response, total: int) -> dict:
    from apps.jobs.models import BatchJob

    assert response.status_code == 202, response.content
    job = response.json()
    assert response["Location"] == f"/api/v1/jobs/{job['id']}/"
    assert job["progress"]["total"] == total
    assert BatchJob.objects.filter(pk=job["id"], status="queued").exists()
    assert Prediction.objects.count() == 0  # the job's worker records them
    return job


def test_an_image_over_the_sync_limit_becomes_a_job(api, tiny_version, settings):
    settings.SYNC_MAX_IMAGE_BYTES = 50
    assert_became_a_job(post_image(api, small_png()), 1)


def test_a_body_over_the_sync_limit_becomes_a_job(api, tiny_version, settings):
    settings.SYNC_MAX_BODY_BYTES = 100
    body = {"image": base64.b64encode(small_png()).decode()}
    job = assert_became_a_job(api.post(URL + "?top_k=2", body, format="json"), 1)
    assert job["top_k"] == 2


def test_a_body_over_the_job_limit_too_is_413_with_a_hint(api, tiny_version, settings):
    settings.SYNC_MAX_BODY_BYTES = 100
    settings.JOB_MAX_BYTES = 200
    response = api.post(URL, {"image": "A" * 500}, format="json")
    error = assert_failed_and_recorded(response, 413, "payload_too_large")
    assert "as a batch job" in error["message"]
    assert error["details"] == {"limit_bytes": 200, "sync_limit_bytes": 100}


def test_a_json_body_over_the_json_limit_is_413_with_a_hint(api, tiny_version, settings):
    """As deployed: JSON is read whole, up to DATA_UPLOAD_MAX_MEMORY_SIZE (= the sync limit),
    so a bigger JSON body cannot become a job either; the answer says what to send instead."""
    settings.SYNC_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = {"image": base64.b64encode(small_png()).decode()}
    for headers in ({}, {"HTTP_PREFER": "respond-async"}):
        Prediction.objects.all().delete()
        error = assert_failed_and_recorded(
            api.post(URL, body, format="json", **headers), 413, "payload_too_large"
        )
        assert "multipart" in error["message"]
        assert error["details"] == {"limit_bytes": 100}


def test_an_image_over_the_sync_limit_with_a_predict_only_key_is_413(key_client, tiny_version, settings):
    """It would become a job, which a key without the 'jobs' scope may not submit: the
    answer is the size limit, with the hint, not a 403 about a job the client never asked for."""
    settings.SYNC_MAX_IMAGE_BYTES = 50
    client = key_client(scopes=["predict"])
    error = assert_failed_and_recorded(post_image(client, small_png()), 413, "payload_too_large")
    assert "'jobs' scope" in error["message"]
    assert error["details"]["sync_max_image_bytes"] == 50


def test_an_image_too_big_for_a_job_too_is_413(api, tiny_version, settings):
    settings.SYNC_MAX_IMAGE_BYTES = 10
    settings.JOB_MAX_ITEM_BYTES = 20
    error = assert_failed_and_recorded(post_image(api, small_png()), 413, "input_too_large")
    assert error["details"]["limit_bytes"] == 20


def test_too_many_images_become_a_job(api, tiny_version, settings):
    settings.SYNC_MAX_IMAGES = 1
    files = [SimpleUploadedFile(f"{i}.png", small_png()) for i in range(2)]
    assert_became_a_job(api.post(URL, {"image": files}, format="multipart"), 2)


def test_prefer_respond_async_makes_a_job(api, tiny_version):
    response = post_image(api, small_png(), HTTP_PREFER="respond-async, wait=10")
    assert_became_a_job(response, 1)
    assert response["Preference-Applied"] == "respond-async"
    body = {"inputs": {"input": [[[[0.0] * 8] * 8] * 3]}}
    response = api.post(URL, body, format="json", HTTP_PREFER="respond-async")
    assert response.json()["kind"] == "tensor"


@pytest.mark.parametrize("k", ["0", "101", "many"])
def test_k_out_of_range_is_400(api, tiny_version, k):
    response = post_image(api, small_png(), query=f"?top_k={k}")
    error = assert_failed_and_recorded(response, 400, "invalid_input")
    assert "top_k" in error["details"]
    assert Prediction.objects.get().error_message.startswith('The request is invalid. {"top_k": ["')


def test_a_large_body_of_another_media_type_is_415_not_a_json_413(api, tiny_version, settings):
    settings.SYNC_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = api.generic("POST", URL, b"x" * 500, content_type="application/octet-stream")
    assert_failed_and_recorded(response, 415, "unsupported_media_type")


def test_a_refused_batch_leaves_one_row_per_image(key_client, tiny_version, settings):
    files = [
        SimpleUploadedFile(f"{i}.png", encode(Image.new("RGB", (8, 8), c), "PNG"))
        for i, c in enumerate(["red", "blue"])
    ]
    settings.SYNC_MAX_IMAGE_BYTES = min(f.size for f in files) - 1  # each over the sync limit
    response = key_client(scopes=["predict"]).post(URL, {"image": files}, format="multipart")
    assert response.status_code == 413
    rows = Prediction.objects.order_by("id")
    assert [(r.status, r.error_code) for r in rows] == [("failed", "payload_too_large")] * 2
    assert len({r.input_sha256 for r in rows}) == 2


def test_a_refused_request_with_more_images_than_a_sync_call_takes_leaves_one_row(key_client, tiny_version):
    """5,000 images refused must not write 5,000 rows (that spends no quota)."""
    images = [base64.b64encode(small_png()).decode()] * 40  # SYNC_MAX_IMAGES is 32
    response = key_client(scopes=["predict"]).post(URL, {"images": images}, format="json")
    assert response.status_code == 413
    row = Prediction.objects.get()
    assert (row.status, row.error_code) == ("failed", "payload_too_large")
    assert row.input_meta == {"kind": "images", "count": 40, "size": 40 * len(small_png())}


def test_a_replayed_job_request_gets_its_job_after_the_version_stopped_serving(api, tiny_version):
    """Idempotency-Key: the job made the first time answers, as /api/v1/jobs/ does."""
    headers = {"HTTP_PREFER": "respond-async", "HTTP_IDEMPOTENCY_KEY": "k1"}
    first = post_image(api, small_png(), query="?version=1", **headers)
    assert first.status_code == 202
    ModelVersion.objects.filter(pk=tiny_version.pk).update(status="archived")
    again = post_image(api, small_png(), query="?version=1", **headers)
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert not Prediction.objects.exists()


def test_k_out_of_range_in_a_form_field_is_400(api, tiny_version):
    response = api.post(
        URL, {"image": [SimpleUploadedFile("x", small_png())], "top_k": "0"}, format="multipart"
    )
    error = assert_failed_and_recorded(response, 400, "invalid_input")
    assert "top_k" in error["details"]


def test_k_out_of_range_in_a_json_body_is_400(api, tiny_version):
    body = {"image": base64.b64encode(small_png()).decode(), "top_k": 101}
    error = assert_failed_and_recorded(api.post(URL, body, format="json"), 400, "invalid_input")
    assert "top_k" in error["details"]


def test_an_unknown_version_is_404_and_not_recorded(api, tiny_version):
    response = post_image(api, small_png(), query="?version=9")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "version_not_found"
    assert not Prediction.objects.exists()


def test_an_unknown_alias_is_404(api, tiny_version):
    response = post_image(api, small_png(), query="?alias=canary")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "alias_not_found"


def test_version_and_alias_together_are_400(api, tiny_version):
    assert post_image(api, small_png(), query="?version=1&alias=production").status_code == 400


@pytest.mark.parametrize("status", ["pending", "validating", "failed", "archived"])
def test_a_version_that_is_not_ready_is_409(api, tiny_version, status):
    ModelVersion.objects.filter(pk=tiny_version.pk).update(status=status)
    error = assert_failed_and_recorded(
        post_image(api, small_png(), query="?version=1"), 409, "version_not_ready"
    )
    assert error["details"]["status"] == status


@pytest.mark.parametrize(
    "body, fmt",
    [
        ({}, "json"),
        ({"image": "x", "inputs": {}}, "json"),
        ({"images": []}, "json"),
        ({"other": "x"}, "multipart"),
    ],
)
def test_a_request_with_no_input_is_400(api, tiny_version, body, fmt):
    assert_failed_and_recorded(api.post(URL, body, format=fmt), 400, "no_input")


def test_invalid_base64_is_422(api, tiny_version):
    response = api.post(URL, {"image": "not base64!!"}, format="json")
    assert_failed_and_recorded(response, 422, "invalid_image")


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_a_version_that_is_not_ready_is_409_whatever_the_body(api, tiny_version, status):
    """Readiness is checked before the body is read, and before it could become a job."""
    ModelVersion.objects.filter(pk=tiny_version.pk).update(status=status)
    response = api.post(URL + "?version=1", {"image": "not base64!!"}, format="json")
    assert_failed_and_recorded(response, 409, "version_not_ready")
    Prediction.objects.all().delete()
    response = post_image(api, small_png(), query="?version=1", HTTP_PREFER="respond-async")
    assert_failed_and_recorded(response, 409, "version_not_ready")


def test_a_long_data_url_media_type_is_cut_in_the_audit_row(api, tiny_version):
    value = "data:image/" + "x" * 5000 + ";base64," + base64.b64encode(small_png()).decode()
    assert api.post(URL, {"image": value}, format="json").status_code == 200
    assert len(Prediction.objects.get().input_meta["content_type"]) == 100


def test_an_overlong_client_address_is_cut_to_the_column(api, tiny_version):
    assert post_image(api, small_png(), REMOTE_ADDR="1" * 100).status_code == 200
    assert Prediction.objects.get().client_address == "1" * 64


def test_an_unsupported_media_type_is_415(api, tiny_version):
    response = api.generic("POST", URL, b"raw", content_type="application/octet-stream")
    assert response.status_code == 415


def test_a_failed_prediction_spends_no_quota(api, user, tiny_version):
    post_image(api, b"junk")
    assert post_image(api, small_png()).status_code == 200
    assert QuotaUsage.objects.get(user=user).used == 1


def test_a_spent_quota_is_429_and_recorded(api, tiny_version, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 1
    assert post_image(api, small_png()).status_code == 200
    response = post_image(api, small_png())
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert Prediction.objects.filter(status="failed", error_code="quota_exceeded").count() == 1


def test_predictions_are_throttled_per_user(api, tiny_version, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "2/min"}
    codes = [post_image(api, small_png()).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_a_key_without_the_predict_scope_is_403(key_client, tiny_version):
    response = post_image(key_client(scopes=["models:read"]), small_png())
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"


def test_a_key_limited_to_other_models_is_403(key_client, tiny_version):
    assert post_image(key_client(model_names=["other"]), small_png()).status_code == 403


def test_another_users_private_model_is_404(client_for, other_user, tiny_version):
    assert post_image(client_for(other_user), small_png()).status_code == 404
    assert not Prediction.objects.exists()


def test_an_internal_model_serves_every_user(client_for, other_user, tiny_version):
    tiny_version.model.visibility = "internal"
    tiny_version.model.save()
    assert post_image(client_for(other_user), small_png()).status_code == 200


def test_a_thin_image_that_would_resize_to_a_huge_one_is_413(api, tiny_version, settings):
    """1x5000 passes the pixel limit, but its short side resized to 8 would make 8x40000."""
    settings.MAX_IMAGE_PIXELS = 100_000
    thin = encode(Image.new("RGB", (1, 5000), "white"), "PNG")
    error = assert_failed_and_recorded(post_image(api, thin), 413, "image_too_large")
    assert error["details"]["resized_height"] == 40_000


def test_images_that_preprocess_to_different_sizes_are_422(api, tiny_version):
    tiny_version.preprocessing = {**tiny_version.preprocessing, "resize": None, "crop": None}
    tiny_version.save()
    files = [
        SimpleUploadedFile("a", encode(Image.new("RGB", (8, 8)), "PNG")),
        SimpleUploadedFile("b", encode(Image.new("RGB", (9, 9)), "PNG")),
    ]
    response = api.post(URL, {"image": files}, format="multipart")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "inconsistent_image_sizes"


def test_too_many_multipart_files_is_a_4xx_not_a_500(api, tiny_version, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [SimpleUploadedFile(f"{i}", small_png()) for i in range(3)]
    response = api.post(URL, {"image": files}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_deeply_nested_json_is_400(api, tiny_version):
    body = b'{"inputs": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    response = api.generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_a_non_numeric_content_length_is_400(api, tiny_version):
    response = api.post(URL, {"image": "x"}, format="json", CONTENT_LENGTH="abc")
    assert response.status_code == 400


def test_a_spent_quota_says_when_to_retry(api, tiny_version, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 0
    response = post_image(api, small_png())
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_a_config_that_does_not_fit_the_model_is_422_after_the_first_image(api, tiny_version, monkeypatch):
    """16x16 images for an 8x8 input: refused before the other images are preprocessed."""
    from apps.inference import preprocessing

    tiny_version.preprocessing = {**tiny_version.preprocessing, "resize": None, "crop": None}
    tiny_version.save()
    calls, convert = [], preprocessing.image_to_array
    monkeypatch.setattr(preprocessing, "image_to_array", lambda *a, **k: calls.append(1) or convert(*a, **k))
    files = [SimpleUploadedFile(f"{i}.png", encode(Image.new("RGB", (16, 16)), "PNG")) for i in range(3)]
    response = api.post(URL, {"image": files}, format="multipart")
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "preprocessing_mismatch"
    assert error["details"]["expected_shape"] == [-1, 3, 8, 8]
    assert len(calls) == 1
    assert Prediction.objects.filter(status="failed", error_code="preprocessing_mismatch").count() == 3


def test_an_idempotency_key_with_no_job_behind_it_still_gets_409_for_a_version_not_ready(api, tiny_version):
    ModelVersion.objects.filter(pk=tiny_version.pk).update(status="archived")
    response = api.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="never-used")
    assert_failed_and_recorded(response, 409, "version_not_ready")


def test_a_bad_form_top_k_with_two_images_leaves_a_row_per_image(api, tiny_version):
    files = [
        SimpleUploadedFile(f"{i}.png", encode(Image.new("RGB", (8, 8), c), "PNG"))
        for i, c in enumerate(["red", "blue"])
    ]
    response = api.post(URL, {"image": files, "top_k": "0"}, format="multipart")
    assert_error_shape(response, 400, "invalid_input")
    rows = Prediction.objects.order_by("id")
    assert [(r.status, r.error_code) for r in rows] == [("failed", "invalid_input")] * 2
    assert all(r.input_sha256 and r.input_meta["size"] for r in rows)


@pytest.mark.parametrize("body_format", ["json", "multipart"])
def test_the_query_top_k_wins_over_a_bad_one_in_the_body(api, tiny_version, body_format):
    if body_format == "json":
        body = {"image": base64.b64encode(small_png()).decode(), "top_k": 0}
    else:
        body = {"image": [SimpleUploadedFile("x", small_png())], "top_k": "0"}
    response = api.post(f"{URL}?top_k=2", body, format=body_format)
    assert response.status_code == 200, response.content
    assert len(response.json()["predictions"][0]["top_k"]) == 2


@pytest.mark.parametrize("media", ["Image/PNG", "IMAGE/png; charset=binary"])
def test_media_types_are_case_insensitive(api, tiny_version, media):
    response = api.generic("POST", URL, small_png(), content_type=media)
    assert response.status_code == 200, response.content
    assert Prediction.objects.get().input_meta["content_type"] == "image/png"


def test_more_json_images_than_the_old_cap_become_a_job(key_client, tiny_version, settings, monkeypatch):
    monkeypatch.setattr("apps.jobs.services.submitting.enqueue_job", lambda job_id: None)
    images = [base64.b64encode(small_png()).decode()] * 1001
    response = key_client().post(URL, {"images": images}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert JobItem.objects.count() == 1001


def test_a_model_file_replaced_on_disk_is_not_served_as_the_recorded_version(api, tiny_version):
    from apps.registry.storage import local_path
    from tests import onnx_models

    local_path(tiny_version.artifact.name).write_bytes(onnx_models.tiny_classifier(seed=7))
    api.raise_request_exception = False
    response = post_image(api, small_png())
    error = assert_failed_and_recorded(response, 500, "model_file_mismatch")
    assert error["details"] == {"version": 1}


def test_an_idempotency_key_costs_a_ready_version_no_job_lookup(api, tiny_version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = post_image(api, small_png(), HTTP_IDEMPOTENCY_KEY="k9")
    assert response.status_code == 200, response.content
    assert not [q["sql"] for q in queries if "jobs_batchjob" in q["sql"]]
