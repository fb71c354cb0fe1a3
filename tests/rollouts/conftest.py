import base64

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from apps.registry.models import ModelAlias
from apps.rollouts.routing import bucket
from tests import onnx_models
from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    TINY_PREPROCESSING,
    encode,
    fresh_session_cache,
    ready_version,
    tiny_version,
)

PNG = encode(Image.new("RGB", (8, 8), "blue"), "PNG")
BODY = {"image": base64.b64encode(PNG).decode()}


@pytest.fixture
def candidate(tiny_version):  # noqa: F811 (the imported fixture, requested)
    """Version 2 of the tiny model: other weights, the same outputs and labels."""
    return ready_version(
        tiny_version.model,
        onnx_models.tiny_classifier(seed=7),
        number=2,
        alias=None,
        labels=["a", "b", "c"],
        preprocessing=dict(TINY_PREPROCESSING),
    )


def start(api, versions=((2, 10),), name="tiny", **body):
    payload = {"candidates": [{"version": v, "weight": w} for v, w in versions], **body}
    return api.post(f"/api/v1/models/{name}/rollouts/", payload, format="json")


def production(model) -> int:
    return ModelAlias.objects.get(model=model, name="production").version.number


def key_in(rollout_id: int, canary: bool, weight: int = 10, prefix: str = "k") -> str:
    """A routing key the split sends to the canary (or to the primary)."""
    for n in range(10_000):
        key = f"{prefix}{n}"
        if (bucket(rollout_id, f"given:{key}") < weight) == canary:
            return key
    raise AssertionError("no such key")


def predict(api, key: str | None = None, query: str = ""):
    headers = {"HTTP_X_ROUTING_KEY": key} if key is not None else {}
    return api.post(f"/api/v1/models/tiny/predict{query}", BODY, format="json", **headers)


def reversed_classifier(seed: int = 0) -> bytes:
    """The tiny classifier of `seed` with its classes in reverse order: same labels and
    outputs, other answers (a deliberately bad candidate)."""
    model = onnx.load_from_string(onnx_models.tiny_classifier(seed=seed))
    weights = model.graph.initializer[0]
    flipped = numpy_helper.to_array(weights)[:, ::-1].copy()
    weights.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(flipped), weights.name))
    return model.SerializeToString()


@pytest.fixture
def reversed_version(tiny_version):  # noqa: F811 (the imported fixture, requested)
    """Version 2 of the tiny model answering with its classes reversed."""
    return ready_version(
        tiny_version.model,
        reversed_classifier(),
        number=2,
        alias=None,
        labels=["a", "b", "c"],
        preprocessing=dict(TINY_PREPROCESSING),
    )


def start_shadow(api, version=2, percent=100, candidates=(), name="tiny", **body):
    payload = {
        "candidates": [{"version": v, "weight": w} for v, w in candidates],
        "shadow_version": version,
        "shadow_percent": percent,
        **body,
    }
    return api.post(f"/api/v1/models/{name}/rollouts/", payload, format="json")
