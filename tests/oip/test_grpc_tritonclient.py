"""NVIDIA's own gRPC client, unmodified, against the platform's gRPC server (started in this
process on a free port, its calls served by its own threads against the test database):
what a team that calls Triton over gRPC today does, with an API key in the metadata.

The fixtures here (`grpc_server`, `triton`, `metadata`, `stub`) serve test_grpc_bad_input.py too.
"""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from apps.accounts.models import QuotaUsage
from apps.inference.models import Prediction
from apps.oip.grpc import server
from tests.inference.conftest import photo

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["grpc_server", "metadata", "stub", "triton"]  # the fixtures other modules import


@pytest.fixture
def grpc_server(settings):
    running = server.start(
        address="127.0.0.1",
        port=0,
        max_workers=4,
        max_message_bytes=settings.GRPC_MAX_MESSAGE_BYTES,
        health_interval=0.1,
    )
    yield running
    running.stop(grace=None)


@pytest.fixture
def triton(grpc_server):
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_server.port}")
    yield client
    client.close()


@pytest.fixture
def stub(grpc_server):
    """The service's plain gRPC stub, for what tritonclient hides (metadata, status codes)."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def metadata(key_client) -> dict[str, str]:
    return {"x-api-key": key_client().key}


def fp32_input(array: np.ndarray, name: str = "input") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def v1_logits(api, array: np.ndarray) -> np.ndarray:
    """The same tensor through /api/v1: the reference answer."""
    body = {"inputs": {"input": {"data": array.ravel().tolist(), "shape": list(array.shape)}}}
    response = api.post("/api/v1/models/effnet/predict", body, format="json")
    assert response.status_code == 200, response.content
    return np.asarray(response.json()["predictions"][0]["outputs"]["logits"]["data"], np.float32).ravel()


def test_live_ready_and_server_metadata_need_no_credentials(triton, demo_version):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    server_metadata = triton.get_server_metadata()
    assert server_metadata.name == "mlplatform"
    assert {"binary_tensor_data", "classification"} <= set(server_metadata.extensions)


def test_model_metadata_and_readiness(triton, metadata, demo_version):
    model = triton.get_model_metadata("effnet", headers=metadata)
    assert model.name == "effnet" and list(model.versions) == ["1"]
    assert model.platform == "onnxruntime_onnx"
    (tensor,) = model.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("input", "FP32", [-1, 3, 224, 224])
    assert model.outputs[0].datatype == "FP32"
    assert triton.is_model_ready("effnet", headers=metadata)
    assert triton.is_model_ready("effnet", "1", headers=metadata)
    assert triton.is_model_ready("effnet", "production", headers=metadata)
    index = triton.get_model_repository_index(headers=metadata)
    assert [(m.name, m.version, m.state) for m in index.models] == [("effnet", "1", "READY")]


def test_infer_with_raw_fp32_tensors_matches_api_v1_and_is_audited(triton, metadata, demo_version, api, user):
    array = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    output = grpcclient.InferRequestedOutput("logits")
    result = triton.infer(
        "effnet", [fp32_input(array)], outputs=[output], request_id="req-7", headers=metadata
    )
    assert result.get_response().id == "req-7"
    assert result.get_response().model_version == "1"
    logits = result.as_numpy("logits")
    assert logits.shape == (1, 1000) and logits.dtype == np.float32
    np.testing.assert_allclose(logits.ravel(), v1_logits(api, array), rtol=1e-5, atol=1e-5)
    row = Prediction.objects.get(source="v2-grpc")
    assert (row.status, row.model_name, row.version_number, row.alias) == (
        "succeeded",
        "effnet",
        1,
        "production",
    )
    assert row.api_key is not None and row.client_address == "127.0.0.1"
    assert QuotaUsage.objects.get(user=user).used == 2  # this call and the reference call


def test_infer_with_typed_contents(stub, metadata, tensor_version):
    """Typed contents, which tritonclient does not send: fp32_contents and int64_contents."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    request = pb.ModelInferRequest(model_name="doubler", id="typed")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend(x.ravel())
    request.inputs.add(name="n", datatype="INT64", shape=[2]).contents.int64_contents.extend([5, 7])
    response = stub.ModelInfer(request, metadata=list(metadata.items()))
    outputs = {
        o.name: (o, raw) for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
    (y, y_raw), (count, count_raw) = outputs["y"], outputs["count"]
    assert (y.datatype, list(y.shape), count.datatype) == ("FP32", [2, 4], "INT64")
    np.testing.assert_array_equal(np.frombuffer(y_raw, "<f4").reshape(2, 4), x * 2)
    np.testing.assert_array_equal(np.frombuffer(count_raw, "<i8"), [6, 8])
    assert response.id == "typed" and Prediction.objects.get(source="v2-grpc").status == "succeeded"


def test_an_encoded_image_as_bytes_with_the_classification_extension(triton, metadata, demo_version, api):
    jpeg = photo("coffee")
    tensor = grpcclient.InferInput("input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
    output = grpcclient.InferRequestedOutput("logits", class_count=3)
    result = triton.infer("effnet", [tensor], outputs=[output], headers=metadata)
    classes = result.as_numpy("logits")
    assert classes.shape == (1, 3)
    best = classes[0][0].decode().split(":")
    reference = api.post("/api/v1/models/effnet/predict", {"image": [photo_file(jpeg)]}, format="multipart")
    top = reference.json()["predictions"][0]["top_k"][0]
    assert (float(best[0]), int(best[1]), best[2]) == (top["score"], top["index"], top["label"])
    row = Prediction.objects.get(source="v2-grpc")
    assert row.input_meta["kind"] == "image" and row.output["top_k"][0]["index"] == top["index"]


def test_a_batch_of_images_is_one_audit_row_each(triton, metadata, tiny_version, user):
    from tests.inference.conftest import encode

    images = [encode(_image(colour), "PNG") for colour in ("red", "green", "blue")]
    tensor = grpcclient.InferInput("input", [3], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    result = triton.infer(
        "tiny", [tensor], outputs=[grpcclient.InferRequestedOutput("logits")], headers=metadata
    )
    assert result.as_numpy("logits").shape == (3, 3)
    assert Prediction.objects.filter(source="v2-grpc", status="succeeded").count() == 3
    assert QuotaUsage.objects.get(user=user).used == 3


def test_async_infer(triton, metadata, demo_version):
    done = []
    array = np.zeros((2, 3, 224, 224), np.float32)
    triton.async_infer(
        "effnet",
        [fp32_input(array)],
        callback=lambda result, error: done.append((result, error)),
        headers=metadata,
    )
    import time

    deadline = time.monotonic() + 30
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)
    ((result, error),) = done
    assert error is None
    assert result.as_numpy("logits").shape == (2, 1000)


def test_an_unknown_model_is_not_found(triton, metadata, demo_version):
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("no-such-model", [fp32_input(np.zeros((1, 3, 224, 224), np.float32))], headers=metadata)
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert "no-such-model" in raised.value.message()
    assert not Prediction.objects.exists()


def _image(colour: str):
    from PIL import Image

    return Image.new("RGB", (8, 8), colour)


def photo_file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("coffee.jpg", data, content_type="image/jpeg")
