"""Bad input on the Open Inference Protocol's REST door: the protocol's error form
({"error": message} with the HTTP status), a failed audit row once a version is known,
never a 500."""

import gzip
import json
import struct

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from apps.accounts.models import ApiKey, QuotaUsage
from apps.inference.models import Prediction
from tests.factories import UserFactory
from tests.inference.conftest import encode, photo

pytestmark = pytest.mark.django_db

TINY = "/v2/models/tiny/infer"
HEADER = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"


def binary_request(inputs: list[tuple[dict, bytes]], **extra) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [entry for entry, _ in inputs], **extra}).encode()
    return header + b"".join(raw for _, raw in inputs), len(header)


def tiny_input(array=None, **changes) -> tuple[dict, bytes]:
    array = np.zeros((1, 3, 8, 8), np.float32) if array is None else array
    raw = array.tobytes()
    entry = {"name": "input", "datatype": "FP32", "shape": list(array.shape)}
    entry["parameters"] = {"binary_data_size": len(raw)}
    entry.update(changes)
    return entry, raw


def post(api, body: bytes, header_length=None, url: str = TINY, **headers):
    if header_length is not None:
        headers[HEADER] = str(header_length)
    return api.generic("POST", url, body, content_type="application/octet-stream", **headers)


def assert_error(response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert fragment.lower() in body["error"].lower()


def failed_rows() -> list[str]:
    return list(
        Prediction.objects.filter(source="v2-rest", status="failed").values_list("error_code", flat=True)
    )


def test_a_datatype_the_model_does_not_take_is_400_and_recorded(api, tiny_version):
    body, n = binary_request([tiny_input(np.zeros((1, 3, 8, 8), np.float64), datatype="FP64")])
    assert_error(post(api, body, n), 400, "the model takes FP32")
    assert failed_rows() == ["invalid_inference_request"]


def test_a_shape_the_model_does_not_take_is_422(api, tiny_version):
    body, n = binary_request([tiny_input(np.zeros((1, 3, 4, 4), np.float32))])
    assert_error(post(api, body, n), 422, "expects shape")
    assert failed_rows() == ["invalid_tensor"]


@pytest.mark.parametrize(
    ("size", "fragment"),
    [(10_000, "does not fit"), (-1, "does not fit"), ("768", "does not fit"), (700, "768 expected")],
)
def test_binary_data_sizes_that_disagree_with_the_body_are_400(api, tiny_version, size, fragment):
    entry, raw = tiny_input()
    entry["parameters"]["binary_data_size"] = size
    body, n = binary_request([(entry, raw)])
    assert_error(post(api, body, n), 400, fragment)
    assert failed_rows() == ["invalid_inference_request"]


def test_binary_data_past_the_declared_sizes_is_400(api, tiny_version):
    body, n = binary_request([tiny_input()])
    assert_error(post(api, body + b"extra", n), 400, "add up to 768")


@pytest.mark.parametrize("length", ["100000", "-5", "twelve", "1.5"])
def test_a_header_length_that_disagrees_with_the_body_is_400(api, tiny_version, length):
    body, _ = binary_request([tiny_input()])
    assert_error(post(api, body, length), 400, "Inference-Header-Content-Length")


def test_a_header_length_shorter_than_the_header_is_400(api, tiny_version):
    body, n = binary_request([tiny_input()])
    assert_error(post(api, body, n - 10), 400, "not valid JSON")


def test_a_header_that_is_not_json_is_400_and_recorded(api, tiny_version):
    assert_error(post(api, b"{inputs: [", None), 400, "not valid JSON")
    assert_error(post(api, b"[1, 2]", None), 400, "JSON object")
    assert failed_rows() == ["invalid_inference_request"] * 2


def test_a_bytes_element_with_a_bad_length_prefix_is_400(api, tiny_version):
    data = photo("coffee")
    raw = struct.pack("<I", len(data) + 50) + data
    entry = {"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}
    body, n = binary_request([(entry, raw)])
    assert_error(post(api, body, n), 400, "claims")


def test_an_unknown_requested_output_is_400_and_recorded(api, tiny_version):
    body, n = binary_request([tiny_input()], outputs=[{"name": "secrets"}])
    assert_error(post(api, body, n), 400, "Unknown output 'secrets'")
    assert failed_rows() == ["invalid_inference_request"]


def test_data_and_binary_for_one_input_is_400(api, tiny_version):
    entry, raw = tiny_input(data=[0.0] * 192)
    body, n = binary_request([(entry, raw)])
    assert_error(post(api, body, n), 400, "both")


def test_json_data_of_the_wrong_size_is_400(api, tiny_version):
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [1.0, 2.0]}]}
    assert_error(api.post(TINY, body, format="json"), 400, "must hold 192 numbers")


def test_a_gzip_bomb_is_413(api, tiny_version, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000
    bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
    assert len(bomb) < 10_000
    assert_error(post(api, bomb, None, HTTP_CONTENT_ENCODING="gzip"), 413, "decompresses to more than")
    assert failed_rows() == ["payload_too_large"]


def test_a_body_that_is_not_gzip_is_400(api, tiny_version):
    assert_error(post(api, b"plain", None, HTTP_CONTENT_ENCODING="gzip"), 400, "cannot be decompressed")


def test_no_credentials_is_401(anon, tiny_version):
    body, n = binary_request([tiny_input()])
    assert_error(post(anon, body, n), 401)
    assert not Prediction.objects.exists()


def test_a_revoked_key_is_401(key_client, tiny_version):
    client = key_client()
    ApiKey.objects.filter(pk=client.api_key.pk).update(revoked_at=timezone.now())
    body, n = binary_request([tiny_input()])
    assert_error(post(client, body, n), 401, "revoked")


def test_a_key_without_the_predict_scope_is_403(key_client, tiny_version):
    body, n = binary_request([tiny_input()])
    assert_error(post(key_client(scopes=["models:read"]), body, n), 403, "predict")


def test_a_key_limited_to_other_models_is_403(key_client, tiny_version):
    body, n = binary_request([tiny_input()])
    assert_error(post(key_client(model_names=["other"]), body, n), 403)
    assert_error(key_client(model_names=["other"]).get("/v2/models/tiny"), 403)


def test_another_users_private_model_is_404_as_if_it_did_not_exist(client_for, tiny_version):
    stranger = client_for(UserFactory(username="mallory"))
    body, n = binary_request([tiny_input()])
    hidden = post(stranger, body, n)
    unknown = post(stranger, body, n, url="/v2/models/no-such-model/infer")
    assert_error(hidden, 404)
    assert hidden.json()["error"].replace("tiny", "X") == unknown.json()["error"].replace(
        "no-such-model", "X"
    )
    assert_error(stranger.get("/v2/models/tiny"), 404)
    assert_error(stranger.get("/v2/models/tiny/ready"), 404)
    assert not Prediction.objects.exists()


def test_an_unknown_version_or_a_bad_version_slot_is_an_error(api, tiny_version):
    assert_error(api.get("/v2/models/tiny/versions/7"), 404, "no version 7")
    assert_error(api.get("/v2/models/tiny/versions/99999999999999999999"), 404)
    assert_error(api.get("/v2/models/tiny/versions/staging"), 404, "no alias 'staging'")
    assert_error(api.get("/v2/models/tiny/versions/a.b"), 400, "number or an alias")


def test_throttled_inference_is_429_with_retry_after(api, tiny_version, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "2/min"}
    body, n = binary_request([tiny_input()])
    responses = [post(api, body, n) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert_error(responses[-1], 429)
    assert int(responses[-1]["Retry-After"]) > 0


def test_images_and_tensors_are_counted_as_api_v1_counts_them(api, tiny_version):
    """A BYTES batch of two images is two audit rows and two quota units; a tensor batch one."""
    images = [encode(Image.new("RGB", (8, 8), c), "PNG") for c in ("red", "blue")]
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    entry = {"name": "input", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}
    body, n = binary_request([(entry, raw)])
    assert post(api, body, n).status_code == 200
    body, n = binary_request([tiny_input(np.zeros((2, 3, 8, 8), np.float32))])
    assert post(api, body, n).status_code == 200
    rows = Prediction.objects.filter(source="v2-rest", status="succeeded").order_by("id")
    assert [r.input_meta["kind"] for r in rows] == ["image", "image", "tensors"]
    assert QuotaUsage.objects.get().used == 3


def test_a_model_not_ready_answers_400_on_ready_and_409_on_infer(api, tiny_version):
    tiny_version.status = "archived"
    tiny_version.save()
    assert api.get("/v2/models/tiny/versions/1/ready").status_code == 400
    body, n = binary_request([tiny_input()])
    assert_error(post(api, body, n, url="/v2/models/tiny/versions/1/infer"), 409, "ready")
    assert failed_rows() == ["version_not_ready"]


def test_load_and_unload_are_for_admins_and_act_on_this_process(api, client_for, staff_user, tiny_version):
    from apps.inference.sessions import sessions

    key = (tiny_version.pk, tiny_version.sha256)
    assert_error(api.post("/v2/repository/models/tiny/load"), 403)
    admin = client_for(staff_user)
    assert admin.post("/v2/repository/models/tiny/load").status_code == 200
    assert key in set(sessions().keys())
    assert admin.post("/v2/repository/models/tiny/unload").status_code == 200
    assert key not in set(sessions().keys())
    assert_error(admin.post("/v2/repository/models/nothing/load"), 404)


def test_the_repository_index_lists_only_what_the_caller_sees(api, client_for, tiny_version):
    assert api.post("/v2/repository/index").json() == [{"name": "tiny", "version": "1", "state": "READY"}]
    assert client_for(UserFactory(username="eve")).post("/v2/repository/index").json() == []
    assert_error(api.post("/v2/repository/index", b"[", content_type="application/json"), 400)


def test_a_version_still_validating_is_409_not_a_signature_error(api, tiny_version):
    tiny_version.status, tiny_version.signature = "validating", {}
    tiny_version.save()
    body, n = binary_request([tiny_input()])
    assert_error(post(api, body, n, url="/v2/models/tiny/versions/1/infer"), 409, "validating")
    assert failed_rows() == ["version_not_ready"]
