"""Every bad job submission gets a clear 4xx in the one error shape, and leaves nothing behind."""

import io
import os
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.jobs.models import BatchJob
from tests.jobs.conftest import make_tar, make_zip, photo

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"


def post_archive(client, data: bytes, name: str = "photos.zip"):
    archive = SimpleUploadedFile(name, data, content_type="application/octet-stream")
    return client.post(URL, {"model": "tiny", "archive": [archive]}, format="multipart")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"]
    return error


def assert_nothing_kept(model_store_root) -> None:
    assert BatchJob.objects.count() == 0
    jobs_dir = model_store_root / "jobs"
    assert not jobs_dir.exists() or not any(p.is_file() for p in jobs_dir.rglob("*"))


def test_an_empty_job_is_refused(api, tiny_version, model_store_root):
    assert_error(api.post(URL, {"model": "tiny", "images": []}, format="json"), 400, "empty_job")
    assert_error(api.post(URL, {"model": "tiny"}, format="multipart"), 400, "empty_job")
    assert_error(post_archive(api, make_zip({"empty/": b""})), 400, "empty_job")
    assert_nothing_kept(model_store_root)


def test_a_job_over_the_item_limit_is_413_and_its_files_are_removed(
    api, tiny_version, settings, model_store_root
):
    settings.JOB_MAX_ITEMS = 3
    archive = make_zip({f"{i}.jpg": photo("coffee") for i in range(4)})
    error = assert_error(post_archive(api, archive), 413, "too_many_items")
    assert error["details"]["max_items"] == 3
    assert_nothing_kept(model_store_root)


def test_an_input_over_the_per_item_limit_is_413(api, tiny_version, settings):
    settings.JOB_MAX_ITEM_BYTES = 1000
    files = [SimpleUploadedFile("big.jpg", photo("coffee"), content_type="image/jpeg")]
    assert_error(
        api.post(URL, {"model": "tiny", "inputs": files}, format="multipart"), 413, "input_too_large"
    )


@pytest.mark.parametrize("name", ["../evil.jpg", "a/../../evil.jpg", "/etc/evil.jpg", "C:/evil.jpg"])
def test_an_archive_with_path_traversal_is_refused(api, tiny_version, name, model_store_root):
    archive = make_zip({"ok.jpg": photo("coffee"), name: photo("coffee")})
    error = assert_error(post_archive(api, archive), 400, "unsafe_archive")
    assert error["details"]["entry"] == name
    assert_nothing_kept(model_store_root)


def test_a_tar_with_a_link_or_traversal_is_refused(api, tiny_version):
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("passwd.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    assert_error(post_archive(api, buffer.getvalue(), "x.tar"), 400, "unsafe_archive")
    assert_error(post_archive(api, make_tar({"../up.jpg": b"x"}), "x.tgz"), 400, "unsafe_archive")


def test_a_zip_bomb_is_refused_without_inflating_it(api, tiny_version, settings, model_store_root):
    settings.JOB_MAX_ITEM_BYTES = 1024 * 1024
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.jpg", b"\0" * (64 * 1024 * 1024))  # 64 MB of zeros, ~64 KB compressed
    assert len(buffer.getvalue()) < 200_000
    assert_error(post_archive(api, buffer.getvalue()), 413, "input_too_large")
    assert_nothing_kept(model_store_root)


def test_a_zip_bomb_that_lies_about_its_size_is_stopped_while_reading(api, tiny_version, settings):
    settings.JOB_MAX_ITEM_BYTES = 1024 * 1024
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.jpg", b"\0" * (8 * 1024 * 1024))
    data = bytearray(buffer.getvalue())
    # Rewrite the declared uncompressed size (central directory) to 100 bytes.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    response = post_archive(api, bytes(data))
    assert response.status_code in (400, 413), response.content
    assert response.json()["error"]["code"] in ("input_too_large", "invalid_archive")
    assert BatchJob.objects.count() == 0


def test_a_corrupt_or_unknown_archive_is_400(api, tiny_version):
    assert_error(post_archive(api, b"PK\x03\x04 this is not really a zip"), 400, "invalid_archive")
    assert_error(post_archive(api, b"just some bytes", "x.tar"), 400, "invalid_archive")


def _damaged(data: bytes, at: float, length: int = 30) -> bytes:
    damaged = bytearray(data)
    start = int(len(damaged) * at)
    for i in range(start, min(start + length, len(damaged))):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def _zip(compression: int, encrypted: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("a.jpg", bytes(range(256)) * 400)
    data = bytearray(buffer.getvalue())
    if encrypted:  # the "encrypted" flag in the local and the central header
        data[6] |= 1
        data[data.rfind(b"PK\x01\x02") + 8] |= 1
        return bytes(data)
    return _damaged(bytes(data), 0.2, 40)  # inside the member's compressed data


@pytest.mark.parametrize(
    ("data", "name"),
    [
        pytest.param(_zip(zipfile.ZIP_DEFLATED), "a.zip", id="zip-damaged-deflate"),
        pytest.param(_zip(zipfile.ZIP_LZMA), "a.zip", id="zip-damaged-lzma"),
        pytest.param(_zip(zipfile.ZIP_STORED, encrypted=True), "a.zip", id="zip-encrypted"),
        pytest.param(
            _damaged(make_tar({"a.jpg": bytes(range(256)) * 4000}, "w:xz"), 0.5), "a.txz", id="txz-damaged"
        ),
        pytest.param(
            _damaged(make_tar({"a.jpg": os.urandom(200_000)}, "w:gz"), 0.5), "a.tgz", id="tgz-damaged"
        ),
        pytest.param(
            make_tar({"a.jpg": b"x" * 5000, "b.jpg": b"y" * 5000}, "w:gz")[:-20], "a.tgz", id="tgz-cut"
        ),
        pytest.param(
            make_tar({"a.jpg": b"x" * 5000, "b.jpg": b"y" * 5000}, "w:bz2")[:-20], "a.tbz", id="tbz-cut"
        ),
        pytest.param(
            make_tar({"a.jpg": b"x" * 5000, "b.jpg": b"y" * 5000}, "w")[:5632], "a.tar", id="tar-cut"
        ),
    ],
)
def test_a_damaged_or_truncated_archive_is_400_with_nothing_kept(
    api, tiny_version, model_store_root, data, name
):
    """Never a 500, and never a job that silently lost members."""
    api.raise_request_exception = False
    assert_error(post_archive(api, data, name), 400, "invalid_archive")
    assert_nothing_kept(model_store_root)


def test_a_tar_whose_later_header_is_damaged_is_400(api, tiny_version):
    raw = bytearray(make_tar({"a.jpg": b"x" * 512, "b.jpg": b"y" * 512}, "w"))
    raw[1024 + 148] ^= 0xFF  # the second header's checksum field
    assert_error(post_archive(api, bytes(raw), "a.tar"), 400, "invalid_archive")


def test_an_unknown_model_version_or_alias_is_404(api, tiny_version):
    images = ["aGVsbG8="]
    assert_error(api.post(URL, {"model": "nope", "images": images}, format="json"), 404, "model_not_found")
    body = {"model": "tiny", "version": 9, "images": images}
    assert_error(api.post(URL, body, format="json"), 404, "version_not_found")
    body = {"model": "tiny", "alias": "staging", "images": images}
    assert_error(api.post(URL, body, format="json"), 404, "alias_not_found")


def test_a_version_that_is_not_ready_is_409(api, tiny_version):
    tiny_version.status = "pending"
    tiny_version.save()
    body = {"model": "tiny", "version": 1, "images": ["aGVsbG8="]}
    assert_error(api.post(URL, body, format="json"), 409, "version_not_ready")


def test_bad_fields_are_400(api, tiny_version):
    body = {"model": "tiny", "images": ["aGVsbG8="], "top_k": 0}
    assert api.post(URL, body, format="json").status_code == 400
    # 422, as the README documents for a prediction input that is not valid base64 (it was 400 here)
    assert_error(api.post(URL, {"model": "tiny", "images": ["%%%"]}, format="json"), 422, "invalid_image")
    body = {"model": "tiny", "images": ["aGVsbG8="], "inputs": [{"x": [1]}]}
    assert_error(api.post(URL, body, format="json"), 400, "no_input")
    response = api.post(URL, {"images": ["aGVsbG8="]}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "http://[::1",  # malformed bracketed hosts: urlsplit raises
        "http://[zz]/hook",
        "http://[127.0.0.1]/hook",
    ],
)
def test_a_webhook_aimed_at_an_internal_address_is_refused(api, tiny_version, settings, url):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    body = {"model": "tiny", "images": ["aGVsbG8="], "webhook_url": url}
    assert_error(api.post(URL, body, format="json"), 400, "webhook_url_refused")
    assert BatchJob.objects.count() == 0


def test_a_loopback_webhook_is_accepted_when_a_setting_allows_it(api, tiny_version, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    body = {"model": "tiny", "images": ["aGVsbG8="], "webhook_url": "http://127.0.0.1:9/hook"}
    assert api.post(URL, body, format="json").status_code == 202


def test_an_idempotency_key_returns_the_original_job_and_refuses_a_different_body(api, tiny_version):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    first = api.post(URL, {"model": "tiny", "images": ["aGVsbG8="]}, format="json", **headers)
    assert first.status_code == 202
    again = api.post(URL, {"model": "tiny", "images": ["aGVsbG8="]}, format="json", **headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    different = api.post(URL, {"model": "tiny", "images": ["aGVsbG8h"]}, format="json", **headers)
    assert_error(different, 422, "idempotency_key_reused")
    assert BatchJob.objects.count() == 1
    long_key = {"HTTP_IDEMPOTENCY_KEY": "k" * 256}
    response = api.post(URL, {"model": "tiny", "images": ["aGVsbG8="]}, format="json", **long_key)
    assert_error(response, 400, "invalid_idempotency_key")


def test_the_same_idempotency_key_of_another_user_is_independent(api, key_client, other_user, tiny_version):
    tiny_version.model.visibility = "internal"
    tiny_version.model.save()
    headers = {"HTTP_IDEMPOTENCY_KEY": "same"}
    first = api.post(URL, {"model": "tiny", "images": ["aGVsbG8="]}, format="json", **headers)
    other = key_client(owner=other_user)
    second = other.post(URL, {"model": "tiny", "images": ["aGVsbG8="]}, format="json", **headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]


def test_a_replay_keeps_no_second_copy_of_the_inputs_and_survives_an_alias_move(
    api, tiny_version, model_store_root
):
    from tests.inference.conftest import ready_version
    from tests.onnx_models import tiny_classifier

    headers = {"HTTP_IDEMPOTENCY_KEY": "replay-1"}
    body = {"model": "tiny", "images": ["aGVsbG8=", "aGVsbG8h"]}
    first = api.post(URL, body, format="json", **headers).json()
    assert len(list((model_store_root / "jobs").iterdir())) == 1
    newer = ready_version(tiny_version.model, tiny_classifier(seed=3), number=2, alias=None)
    from apps.registry.models import ModelAlias

    ModelAlias.objects.filter(model=tiny_version.model, name="production").update(version=newer)
    again = api.post(URL, body, format="json", **headers)
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["version"]) == (first["id"], 1)
    assert len(list((model_store_root / "jobs").iterdir())) == 1


def test_a_raw_image_body_with_prefer_respond_async_becomes_a_job(api, tiny_version):
    response = api.generic(
        "POST",
        "/api/v1/models/tiny/predict",
        photo("coffee"),
        content_type="image/jpeg",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 202, response.content
    assert response.json()["progress"]["total"] == 1


def test_a_job_body_over_the_job_limit_is_refused_before_it_is_read(api, tiny_version, settings):
    settings.JOB_MAX_BYTES = 1000
    files = [SimpleUploadedFile("a.jpg", photo("coffee"), content_type="image/jpeg")]
    response = api.post(URL, {"model": "tiny", "inputs": files}, format="multipart")
    assert_error(response, 413, "job_too_large")


def test_a_predict_only_key_cannot_turn_a_prediction_into_a_job(key_client, tiny_version):
    client = key_client(scopes=["predict"])
    response = client.post(
        "/api/v1/models/tiny/predict",
        {"image": [SimpleUploadedFile("a.jpg", photo("coffee"), content_type="image/jpeg")]},
        format="multipart",
        HTTP_PREFER="respond-async",
    )
    error = assert_error(response, 403, "scope_missing")
    assert "jobs" in error["message"]


def test_a_tar_of_a_great_many_empty_entries_is_refused_without_reading_them_all(api, tiny_version, settings):
    import tarfile

    settings.JOB_MAX_ITEMS = 10
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for index in range(50):
            folder = tarfile.TarInfo(f"d{index}")
            folder.type = tarfile.DIRTYPE
            archive.addfile(folder)
    assert_error(post_archive(api, buffer.getvalue(), "x.tgz"), 413, "too_many_items")


def test_a_huge_hidden_file_in_a_tar_is_refused_before_it_is_inflated(api, tiny_version, settings):
    settings.JOB_MAX_ITEM_BYTES = 1000
    archive = make_tar({".hidden": b"\0" * 5000, "a.jpg": photo("coffee")})
    assert_error(post_archive(api, archive, "x.tgz"), 413, "input_too_large")


def test_archive_names_in_other_encodings_are_stored_as_text(api, tiny_version):
    import tarfile

    from apps.jobs.models import JobItem

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        data = photo("coffee")
        info = tarfile.TarInfo("café.jpg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    response = post_archive(api, buffer.getvalue(), "x.tar")
    assert response.status_code == 202, response.content
    name = JobItem.objects.get(job_id=response.json()["id"]).filename
    assert name.startswith("caf") and name.endswith(".jpg")
    name.encode("utf-8")  # valid text, whatever the archive's encoding


@pytest.mark.parametrize("name", ["x\\u0000", "x\\ud800"])  # as JSON escapes: NUL, a lone surrogate
def test_tensor_names_a_database_cannot_store_are_refused_at_submission(api, tensor_version, name):
    body = '{"model": "doubler", "inputs": [{"NAME": [[1.0, 2.0, 3.0, 4.0]]}]}'.replace("NAME", name)
    response = api.generic("POST", URL, body.encode(), content_type="application/json")
    assert_error(response, 400, "invalid_text")  # the parsing layer's rule for all JSON text


def test_an_idempotent_retry_with_a_webhook_url_returns_the_original_job(api, tiny_version):
    headers = {"HTTP_IDEMPOTENCY_KEY": "hook-1"}
    body = {"model": "tiny", "images": ["aGVsbG8="], "webhook_url": "HTTP://127.0.0.1:9"}
    first = api.post(URL, body, format="json", **headers)
    assert first.status_code == 202, first.content
    assert first.json()["webhook_url"] == "http://127.0.0.1:9/"
    again = api.post(URL, body, format="json", **headers)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


def test_invalid_base64_is_422_as_for_a_synchronous_predict(key_client, tiny_version):
    response = key_client().post("/api/v1/jobs/", {"model": "tiny", "images": ["not base64!"]}, format="json")
    sync = key_client().post("/api/v1/models/tiny/predict", {"image": "not base64!"}, format="json")
    assert response.status_code == sync.status_code == 422
    assert response.json()["error"]["code"] == sync.json()["error"]["code"] == "invalid_image"
