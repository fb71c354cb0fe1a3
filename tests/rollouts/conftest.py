import base64

import pytest
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
