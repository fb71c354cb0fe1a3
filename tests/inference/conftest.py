import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from apps.inference import runtime
from apps.registry.models import ModelAlias
from apps.registry.validation import validate_model_file
from tests import onnx_models
from tests.factories import MLModelFactory, ModelVersionFactory

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "efficientnet_lite0"
PHOTOS = ROOT / "demo" / "images"


@pytest.fixture(autouse=True)
def fresh_session_cache():
    """Each test starts with an empty per-process session cache."""
    runtime.reset_session_cache()
    yield
    runtime.reset_session_cache()


def ready_version(model, content: bytes, *, number: int = 1, alias: str | None = "production", **fields):
    """A version with a real artifact and the signature validation would give it."""
    path = Path(f"/tmp/mlp-test-{hashlib.sha256(content).hexdigest()[:16]}.onnx")
    if not path.exists():
        path.write_bytes(content)
    report = validate_model_file(path, latency_runs=1, throughput_batch=1)
    version = ModelVersionFactory(
        model=model,
        number=number,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        artifact=ContentFile(content, name="model.onnx"),
        signature=report.signature,
        **fields,
    )
    if alias:
        ModelAlias.objects.create(model=model, name=alias, version=version)
    return version


@pytest.fixture
def demo_version(user):
    import json

    model = MLModelFactory(name="effnet", owner=user)
    return ready_version(
        model,
        (DEMO / "model.onnx").read_bytes(),
        labels=(DEMO / "labels.txt").read_text().splitlines(),
        preprocessing=json.loads((DEMO / "preprocessing.json").read_text()),
    )


TINY_PREPROCESSING = {
    "color_mode": "RGB",
    "resize": 8,
    "resize_mode": "shorter_side",
    "crop": 8,
    "scale": 1.0,
    "mean": [127.0],
    "std": [128.0],
    "channel_order": "RGB",
    "layout": "NCHW",
    "dtype": "float32",
    "interpolation": "bilinear",
    "softmax": True,
    "non_finite": "reject",
}


@pytest.fixture
def tiny_version(user):
    """A fast image classifier: [N,3,8,8] → 3 classes a, b, c."""
    model = MLModelFactory(name="tiny", owner=user)
    return ready_version(
        model, onnx_models.tiny_classifier(), labels=["a", "b", "c"], preprocessing=dict(TINY_PREPROCESSING)
    )


@pytest.fixture
def tensor_version(user):
    model = MLModelFactory(name="doubler", owner=user, task="tensor")
    return ready_version(model, onnx_models.tensor_doubler(), preprocessing={"non_finite": "reject"})


def photo(name: str) -> bytes:
    return (PHOTOS / f"{name}.jpg").read_bytes()


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()
