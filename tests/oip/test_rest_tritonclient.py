"""NVIDIA's own HTTP client, unmodified, against a live server: what a team that calls
Triton today does, with an API key in the headers."""

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from apps.inference.models import Prediction
from tests.inference.conftest import photo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def triton(live_server):
    client = httpclient.InferenceServerClient(url=live_server.url.removeprefix("http://"), concurrency=2)
    yield client
    client.close()


@pytest.fixture
def headers(key_client) -> dict[str, str]:
    return {"X-API-Key": key_client().key}


def v1_logits(api, array: np.ndarray) -> np.ndarray:
    """The same tensor through /api/v1: the reference answer."""
    body = {"inputs": {"input": {"data": array.ravel().tolist(), "shape": list(array.shape)}}}
    response = api.post("/api/v1/models/effnet/predict", body, format="json")
    assert response.status_code == 200, response.content
    return np.asarray(response.json()["predictions"][0]["outputs"]["logits"]["data"], np.float32).ravel()


def test_health_and_metadata(triton, headers, demo_version):
    assert triton.is_server_live() and triton.is_server_ready()
    server = triton.get_server_metadata()
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    model = triton.get_model_metadata("effnet", headers=headers)
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert model["outputs"][0]["datatype"] == "FP32"
    assert triton.is_model_ready("effnet", headers=headers)
    assert triton.is_model_ready("effnet", "1", headers=headers)
    assert triton.get_model_repository_index(headers=headers) == [
        {"name": "effnet", "version": "1", "state": "READY"}
    ]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_binary_and_json_tensors_matches_api_v1(triton, headers, demo_version, api, binary):
    array = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    tensor = httpclient.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    output = httpclient.InferRequestedOutput("logits", binary_data=binary)
    result = triton.infer("effnet", [tensor], outputs=[output], request_id="req-7", headers=headers)
    assert result.get_response()["id"] == "req-7"
    logits = result.as_numpy("logits")
    assert logits.shape == (1, 1000)
    np.testing.assert_allclose(logits.ravel(), v1_logits(api, array), rtol=1e-5, atol=1e-5)
    assert Prediction.objects.filter(source="v2-rest", status="succeeded").count() == 1


def test_gzip_both_ways_and_async_infer(triton, headers, demo_version):
    array = np.zeros((2, 3, 224, 224), np.float32)
    tensor = httpclient.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    # tritonclient adds its Content-Encoding to the headers dict it is given: a copy each.
    compressed = triton.infer(
        "effnet",
        [tensor],
        headers=dict(headers),
        request_compression_algorithm="gzip",
        response_compression_algorithm="gzip",
    )
    pending = triton.async_infer(
        "effnet", [tensor], headers=headers, response_compression_algorithm="deflate"
    )
    plain = pending.get_result()
    assert compressed.as_numpy("logits").shape == (2, 1000)
    np.testing.assert_array_equal(compressed.as_numpy("logits"), plain.as_numpy("logits"))


def test_an_encoded_image_as_bytes_with_the_classification_extension(triton, headers, demo_version, api):
    jpeg = photo("coffee")
    tensor = httpclient.InferInput("input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
    output = httpclient.InferRequestedOutput("logits", class_count=3)
    result = triton.infer("effnet", [tensor], outputs=[output], headers=headers)
    best = result.as_numpy("logits")[0][0].decode().split(":")
    reference = api.post("/api/v1/models/effnet/predict", {"image": [photo_file(jpeg)]}, format="multipart")
    top = reference.json()["predictions"][0]["top_k"][0]
    assert (float(best[0]), int(best[1]), best[2]) == (top["score"], top["index"], top["label"])
    row = Prediction.objects.get(source="v2-rest")
    assert row.input_meta["kind"] == "image" and row.output["top_k"][0]["index"] == top["index"]


def test_an_unknown_model_is_an_error_naming_it(triton, headers, demo_version):
    tensor = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("no-such-model", [tensor], headers=headers)
    assert "no-such-model" in raised.value.message()
    assert raised.value.status() == "404"


def photo_file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("coffee.jpg", data, content_type="image/jpeg")
