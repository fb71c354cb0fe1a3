"""Rollouts end to end on PostgreSQL with a real Celery worker process running the shadows.

The requests go through the Django test client, in this process, against the real database
(committed: the worker reads what they wrote); the shadow batches go through the real Redis
broker to a real worker consuming only the `shadow` queue, which writes the shadow rows.

1. The shadow queue falls behind (no worker yet, a bound of 3 messages): the drop count
   explains every sampled input that has no shadow row.
2. A 90/10 split over 1,000 requests from 200 routing keys, with a 100% shadow and nothing
   dropped: each key sees one version, the canary's share of keys is within the binomial
   bound, and each primary row gets exactly one linked shadow row.
3. The shadow (classes reversed) trips its guard rail: the shadow stops, its version flagged.
4. Promote, then abort a second rollout: the alias history records the one move.
"""

import base64
import os
import random
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from PIL import Image

from apps.inference.models import Prediction
from apps.registry.models import ModelAlias, ModelAliasHistory
from apps.rollouts import shadowing
from apps.rollouts.guards import check_guards
from apps.rollouts.models import Rollout
from apps.rollouts.pairing import primary_rows
from tests import live, onnx_models
from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    TINY_PREPROCESSING,
    encode,
    fresh_session_cache,
    ready_version,
    tiny_version,
)
from tests.live import wait_for
from tests.rollouts.conftest import key_in, reversed_classifier

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    *live.requires(postgres=True, redis=True),
]

KEYS, ROUNDS = 200, 5


@pytest.fixture
def broker(settings):
    """The real broker: tasks are sent, not run in this process; the shadow queue starts empty."""
    import redis
    from celery import current_app

    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(settings.SHADOW_QUEUE)
    yield client
    current_app.conf.task_always_eager = eager
    client.delete(settings.SHADOW_QUEUE)


def start_worker(tmp_path, settings) -> live.Live:
    """A Celery worker on this test's database, broker and model store, for shadows only."""
    database = connection.settings_dict
    base = urlsplit(os.environ["DATABASE_URL"])
    env = live.production_env(
        tmp_path,
        urlunsplit(base._replace(path=f"/{database['NAME']}")),
        None,  # the settings' cache prefix, as this process has
        MODEL_STORE_ROOT=str(settings.MODEL_STORE_ROOT),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
    )
    return live.start_worker(env, tmp_path / "worker.log", settings.SHADOW_QUEUE)


def image(rng: random.Random) -> str:
    colour = tuple(rng.randrange(256) for _ in range(3))
    return base64.b64encode(encode(Image.new("RGB", (8, 8), colour), "PNG")).decode()


def predict(api, key: str, body: dict) -> dict:
    response = api.post("/api/v1/models/tiny/predict", body, format="json", HTTP_X_ROUTING_KEY=key)
    assert response.status_code == 200, response.content
    return response.json()


def linked(request_ids: set[str], rollout: Rollout) -> tuple[set, list]:
    """The primary rows' (request id, index), and the shadow rows' (with repeats, if any)."""
    primaries = set(primary_rows(rollout, request_ids))
    shadows = list(
        Prediction.objects.filter(source="shadow", request_id__in=request_ids).values_list(
            "request_id", "input_index"
        )
    )
    return primaries, shadows


def test_rollouts_end_to_end(
    api,
    tiny_version,  # noqa: F811
    broker,
    settings,
    tmp_path,
    monkeypatch,
):
    settings.LOCAL_CACHE_SECONDS = 30  # as in production: the target and split, cached per process
    model = tiny_version.model
    ready_version(
        model, onnx_models.tiny_classifier(seed=7), number=2, alias=None,
        labels=["a", "b", "c"], preprocessing=dict(TINY_PREPROCESSING),
    )  # fmt: skip
    ready_version(
        model, reversed_classifier(), number=3, alias=None,
        labels=["a", "b", "c"], preprocessing=dict(TINY_PREPROCESSING),
    )  # fmt: skip
    body = {
        "candidates": [{"version": 2, "weight": 10}],
        "shadow_version": 3,
        "shadow_percent": 100,
        "max_shadow_disagreement": 0.3,
        "shadow_min_pairs": 100,
    }
    response = api.post("/api/v1/models/tiny/rollouts/", body, format="json")
    assert response.status_code == 201, response.content
    rollout = Rollout.objects.get(pk=response.json()["id"])
    rng = random.Random(16)

    # 1. No worker yet and a bound of 3 messages: the first three wait, the rest are dropped.
    settings.SHADOW_BATCH_SECONDS, settings.SHADOW_QUEUE_MAX_BACKLOG = 0, 3
    key = key_in(rollout.pk, canary=False, prefix="behind")
    behind = [predict(api, key, {"image": image(rng)}) for _ in range(10)]
    assert {answer["route"] for answer in behind} == {"primary"}  # this key's version
    assert broker.llen(settings.SHADOW_QUEUE) == 3
    rollout.refresh_from_db()
    assert rollout.shadow_dropped == 7

    # 2. The worker starts; 1,000 requests, batched by the web side's sender, nothing dropped.
    worker = start_worker(tmp_path, settings)
    try:
        settings.SHADOW_BATCH_SECONDS, settings.SHADOW_QUEUE_MAX_BACKLOG = 0.1, 10_000
        monkeypatch.setattr(shadowing, "sender", shadowing.Sender())
        seen: dict[str, set[int]] = {}
        for _ in range(ROUNDS):
            for n in range(KEYS):
                answer = predict(api, f"client-{n}", {"image": image(rng)})
                seen.setdefault(f"client-{n}", set()).add(answer["version"])
        shadowing.sender.close()  # what is still buffered, now
        assert all(len(versions) == 1 for versions in seen.values())
        on_canary = sum(1 for versions in seen.values() if versions == {2})
        # Binomial(200, 0.1): mean 20, sd 4.24; mean ± 4 sd.
        assert 3 <= on_canary <= 37, on_canary
        primary_ids = set(
            Prediction.objects.filter(source="sync", route="primary").values_list("request_id", flat=True)
        )
        assert len(primary_ids) == 10 + (KEYS - on_canary) * ROUNDS

        def all_shadowed() -> bool:
            return Prediction.objects.filter(source="shadow").count() == len(primary_ids) - 7

        wait_for(all_shadowed, 60, "every queued shadow to be written")
    finally:
        live.stop(worker)
    rollout.refresh_from_db()
    assert rollout.shadow_dropped == 7  # nothing dropped in phase 2
    primaries, shadows = linked(primary_ids, rollout)
    assert len(shadows) == len(set(shadows))  # one row per input, never two
    assert set(shadows) <= primaries and len(primaries) - len(shadows) == rollout.shadow_dropped
    phase2 = primary_ids - {a["request_id"] for a in behind}
    primaries2, shadows2 = linked(phase2, rollout)
    assert set(shadows2) == primaries2  # exactly one linked shadow row per primary row
    assert not Prediction.objects.filter(source="shadow", route="canary").exists()
    assert not Prediction.objects.filter(source="shadow").exclude(user=model.owner).exists()
    assert not shadowing_leftovers()

    # 3. The reversed shadow disagrees: its guard rail stops it and flags its version.
    comparison = api.get(f"/api/v1/models/tiny/rollouts/{rollout.pk}/comparison").json()["shadow"]
    assert comparison["pairs"] == len(shadows) and comparison["agreement"] < 0.7
    assert check_guards() == [rollout.pk]
    rollout.refresh_from_db()
    assert rollout.status == "active" and rollout.shadow_stopped_at is not None
    assert rollout.shadow_reason.startswith("v3 flagged")

    # 4. Promote the canary; a second rollout aborted leaves the alias where it is.
    promote = api.post(f"/api/v1/models/tiny/rollouts/{rollout.pk}/promote", {}, format="json")
    assert promote.status_code == 200 and promote.json()["status"] == "promoted"
    second = api.post(
        "/api/v1/models/tiny/rollouts/", {"candidates": [{"version": 1, "weight": 5}]}, format="json"
    )
    assert second.status_code == 201, second.content
    aborted = api.post(f"/api/v1/models/tiny/rollouts/{second.json()['id']}/abort", {}, format="json")
    assert aborted.json()["status"] == "aborted"
    assert ModelAlias.objects.get(model=model, name="production").version.number == 2
    moves = (
        ModelAliasHistory.objects.filter(model=model, alias_name="production")
        .exclude(action="create")
        .order_by("id")
    )
    assert [(m.action, m.to_version.number if m.to_version else None) for m in moves] == [("move", 2)]


def shadowing_leftovers() -> list[str]:
    """Stored shadow inputs still there (each batch deletes its own once run)."""
    from apps.registry.storage import model_store

    try:
        return model_store.listdir(shadowing.STORAGE_FOLDER)[1]
    except FileNotFoundError:
        return []
