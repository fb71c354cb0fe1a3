"""Image predictions on the real demo model and the tiny classifier."""

import base64
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.inference.models import Prediction
from tests.inference.conftest import encode, photo

pytestmark = pytest.mark.django_db

CAT_CLASSES = {281, 282, 283, 284, 285}


def predict_files(client, name, *files, query=""):
    uploads = [
        SimpleUploadedFile(f"{i}.jpg", data, content_type="image/jpeg") for i, data in enumerate(files)
    ]
    return client.post(f"/api/v1/models/{name}/predict{query}", {"image": uploads}, format="multipart")


def test_the_demo_model_calls_the_coffee_photo_espresso(api, demo_version):
    response = predict_files(api, "effnet", photo("coffee"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["model"], body["version"], body["alias"]) == ("effnet", 1, "production")
    best = body["predictions"][0]["top_k"][0]
    assert (best["index"], best["label"]) == (967, "espresso")
    assert best["score"] > 0.9
    assert len(body["predictions"][0]["top_k"]) == 5
    assert body["request_id"] == response["X-Request-ID"]
    assert set(body["timings_ms"]) == {"preprocess", "inference", "postprocess", "total"}


def test_a_batch_of_images_is_one_call_with_one_audit_row_each(key_client, demo_version, monkeypatch):
    from apps.inference.runtime import LoadedModel

    calls, run = [], LoadedModel.run
    monkeypatch.setattr(LoadedModel, "run", lambda self, feeds: calls.append(feeds) or run(self, feeds))
    client = key_client()
    response = predict_files(client, "effnet", photo("coffee"), photo("chelsea"), query="?top_k=3")
    assert response.status_code == 200
    assert [[array.shape[0] for array in feeds.values()] for feeds in calls] == [[2]]  # one call, batch 2
    first, second = (p["top_k"] for p in response.json()["predictions"])
    assert first[0]["label"] == "espresso"
    assert second[0]["index"] in CAT_CLASSES
    assert len(first) == 3
    rows = list(Prediction.objects.order_by("id"))
    assert [r.status for r in rows] == ["succeeded", "succeeded"]
    row = rows[0]
    assert row.user.username == "alice"
    assert row.api_key_id == client.api_key.pk
    assert (row.model_name, row.version_number, row.alias, row.source) == ("effnet", 1, "production", "sync")
    assert row.input_meta["format"] == "JPEG"
    assert (row.input_meta["width"], row.input_meta["height"]) == (600, 400)
    assert row.input_meta["content_type"] == "image/jpeg"
    assert row.output["top_k"][0]["label"] == "espresso"
    assert len(row.input_sha256) == 64
    assert row.request_id == response["X-Request-ID"]
    assert row.client_address == "127.0.0.1"
    assert row.latency_ms > 0


def test_base64_json_images_work_too(api, demo_version):
    data = base64.b64encode(photo("chelsea")).decode()
    response = api.post("/api/v1/models/effnet/predict", {"image": data, "top_k": 2}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["top_k"][0]["index"] in CAT_CLASSES
    assert len(response.json()["predictions"][0]["top_k"]) == 2
    many = api.post(
        "/api/v1/models/effnet/predict",
        {"images": [f"data:image/jpeg;base64,{data}", base64.b64encode(photo("coffee")).decode()]},
        format="json",
    )
    assert [p["top_k"][0]["label"] for p in many.json()["predictions"]][1] == "espresso"


@pytest.mark.parametrize(
    ("fmt", "params"), [("PNG", {}), ("WEBP", {"quality": 95}), ("BMP", {}), ("GIF", {})]
)
def test_other_image_formats_decode(api, demo_version, fmt, params):
    image = Image.open(io.BytesIO(photo("coffee")))
    response = predict_files(api, "effnet", encode(image, fmt, **params))
    assert response.status_code == 200, response.content
    top = [p["label"] for p in response.json()["predictions"][0]["top_k"]]
    assert "espresso" in top[:3]


def test_exif_orientation_is_applied(api, tiny_version):
    from apps.inference.preprocessing import decode_image

    image = Image.new("RGB", (20, 10), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90°: the upright image is 10 wide, 20 high
    decoded = decode_image(encode(image, "JPEG", exif=exif), max_pixels=10_000)
    assert decoded.image.size == (10, 20)


def test_versions_and_aliases_are_chosen_by_query(api, tiny_version):
    from tests import onnx_models
    from tests.inference.conftest import TINY_PREPROCESSING, ready_version

    ready_version(
        tiny_version.model,
        onnx_models.tiny_classifier(seed=5),
        number=2,
        alias="staging",
        labels=["x", "y", "z"],
        preprocessing=dict(TINY_PREPROCESSING),
    )
    image = encode(Image.new("RGB", (16, 16), "blue"), "PNG")
    assert predict_files(api, "tiny", image).json()["version"] == 1
    staged = predict_files(api, "tiny", image, query="?alias=staging").json()
    assert (staged["version"], staged["alias"]) == (2, "staging")
    pinned = predict_files(api, "tiny", image, query="?version=2").json()
    assert (pinned["version"], pinned["alias"]) == (2, None)
    assert pinned["predictions"][0]["top_k"][0]["label"] in {"x", "y", "z"}


def test_the_session_is_loaded_once_per_process(api, tiny_version):
    from apps.inference.sessions import sessions

    image = encode(Image.new("RGB", (8, 8), "green"), "PNG")
    for _ in range(3):
        assert predict_files(api, "tiny", image).status_code == 200
    assert sessions().loads == 1


def test_production_versions_are_preloaded(tiny_version):
    from apps.inference.sessions import preload_sessions, sessions

    assert preload_sessions() == ["tiny@production"]
    assert sessions().keys() == [(tiny_version.pk, tiny_version.sha256)]


def test_only_as_many_versions_as_the_cache_holds_are_preloaded(user, client, settings):
    """Three production models, room for two: two load, and /readyz is ready without
    loading (and evicting) them all again on every probe."""
    from apps.inference.sessions import preload_sessions, sessions
    from tests import onnx_models
    from tests.factories import MLModelFactory
    from tests.inference.conftest import TINY_PREPROCESSING, ready_version

    settings.SESSION_CACHE_MAX_MODELS = 2
    for seed, name in enumerate(["a", "b", "c"]):
        ready_version(
            MLModelFactory(name=name, owner=user),
            onnx_models.tiny_classifier(seed=seed),
            labels=["x", "y", "z"],
            preprocessing=dict(TINY_PREPROCESSING),
        )
    assert preload_sessions() == ["a@production", "b@production"]
    loads = sessions().loads
    for _ in range(2):
        response = client.get("/readyz")
        assert response.status_code == 200, response.content
    assert sessions().loads == loads


def test_a_raw_image_body_works_without_multipart(api, demo_version):
    response = api.generic(
        "POST", "/api/v1/models/effnet/predict?top_k=1", photo("coffee"), content_type="image/jpeg"
    )
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["top_k"] == [
        {"index": 967, "label": "espresso", "score": response.json()["predictions"][0]["top_k"][0]["score"]}
    ]
    assert Prediction.objects.get().input_meta["content_type"] == "image/jpeg"


def test_an_empty_raw_body_is_400(api, tiny_version):
    response = api.generic("POST", "/api/v1/models/tiny/predict", b"", content_type="image/png")
    assert response.status_code == 400


def test_several_images_on_a_fixed_batch_model_run_one_by_one(api, user):
    from tests import onnx_models
    from tests.factories import MLModelFactory
    from tests.inference.conftest import TINY_PREPROCESSING, ready_version

    model = MLModelFactory(name="fixed", owner=user)
    ready_version(
        model,
        onnx_models.tiny_classifier(batch=1),
        labels=["a", "b", "c"],
        preprocessing=dict(TINY_PREPROCESSING),
    )
    images = [encode(Image.new("RGB", (8, 8), color), "PNG") for color in ("red", "blue", "green")]
    response = predict_files(api, "fixed", *images)
    assert response.status_code == 200, response.content
    assert len(response.json()["predictions"]) == 3


@pytest.mark.parametrize(
    "logits, softmax, scores",
    [
        ([float("-inf"), 0.0, 1.0], False, [1.0, 0.0, "-Infinity"]),
        ([float("inf"), 0.0, 1.0], False, ["Infinity", 1.0, 0.0]),
        ([float("nan"), 0.0, 1.0], False, [1.0, 0.0, None]),  # NaN ranks last
        ([float("nan"), float("-inf"), 0.5], False, [0.5, "-Infinity", None]),  # after -Inf too
        ([float("inf"), 0.0, 1.0], True, [1.0, 0.0, 0.0]),  # +Inf takes all the probability
        ([float("nan"), 0.0, 1.0], True, [0.731059, 0.268941, 0.0]),  # a NaN logit: probability 0
    ],
)
def test_a_model_that_outputs_nan_or_inf_answers_in_valid_json(api, user, logits, softmax, scores):
    """Not a 500: the scores come out as JSON can hold them, and the audit row is written."""
    from tests import onnx_models
    from tests.factories import MLModelFactory
    from tests.inference.conftest import TINY_PREPROCESSING, ready_version

    ready_version(
        MLModelFactory(name="odd", owner=user),
        onnx_models.constant_classifier(logits),
        labels=["a", "b", "c"],
        preprocessing={**TINY_PREPROCESSING, "softmax": softmax},
    )
    response = predict_files(api, "odd", encode(Image.new("RGB", (8, 8)), "PNG"), query="?top_k=3")
    assert response.status_code == 200, response.content
    assert [entry["score"] for entry in response.json()["predictions"][0]["top_k"]] == scores
    row = Prediction.objects.get()
    assert row.status == "succeeded"
    assert [entry["score"] for entry in row.output["top_k"]] == scores


def test_top_k_ranks_the_class_scores_even_when_a_label_output_comes_first(api, user):
    """The output validation counts labels against is the one predictions rank: the first
    floating-point output with a class dimension, not the int64 `label` before it."""
    from tests import onnx_models
    from tests.factories import MLModelFactory
    from tests.inference.conftest import TINY_PREPROCESSING, ready_version

    ready_version(
        MLModelFactory(name="sklearnish", owner=user),
        onnx_models.label_then_scores_classifier([0.1, 0.7, 0.2]),
        labels=["a", "b", "c"],
        preprocessing={**TINY_PREPROCESSING, "softmax": False},  # probabilities already
    )
    response = predict_files(api, "sklearnish", encode(Image.new("RGB", (8, 8)), "PNG"), query="?top_k=3")
    assert response.status_code == 200, response.content
    ranked = response.json()["predictions"][0]["top_k"]
    assert [(entry["label"], entry["score"]) for entry in ranked] == [("b", 0.7), ("c", 0.2), ("a", 0.1)]
