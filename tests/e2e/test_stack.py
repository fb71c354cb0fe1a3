"""End to end: a real gunicorn and a real Celery worker, on the configured database and broker.

In CI, DATABASE_URL and REDIS_URL point at the machine's PostgreSQL and Redis;
the test creates its own database there and drops it afterwards. Without them
it runs on the embedded default (an SQLite file and the filesystem broker).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import live
from tests.live import DEMO, ROOT, login, wait_for

pytestmark = pytest.mark.e2e

# Low limits, so the tests can reach them; both web servers must share them.
REGISTRY_WRITE_LIMIT = 6
MONTHLY_QUOTA = 4


@pytest.fixture(scope="module")
def stack(e2e_dir: Path, database_url: str) -> Iterator[dict]:
    """Two gunicorn servers (separate processes) and one Celery worker on one database and broker."""
    env = live.production_env(
        e2e_dir,
        database_url,
        "e2e",
        THROTTLE_RATE_REGISTRY_WRITE=f"{REGISTRY_WRITE_LIMIT}/hour",
        MONTHLY_PREDICTION_QUOTA=str(MONTHLY_QUOTA),
    )
    live.migrate(env)
    live.collectstatic(env)
    live.create_users(env, ["e2e", "e2e-throttle", "e2e-quota"], "e2e-password", superuser=True)
    webs = [live.start_web(env, e2e_dir / f"web{index}.log", timeout=120) for index in range(2)]
    worker = live.start_worker(env, e2e_dir / "worker.log", "validation,default")
    try:
        for web in webs:
            web.wait_ready()
        yield {"url": webs[0].url, "urls": [web.url for web in webs], "logs": e2e_dir, "env": env}
    finally:
        live.stop(*webs, worker)


def test_a_model_uploaded_over_http_is_validated_by_a_real_worker(stack: dict) -> None:
    url = stack["url"]
    http = login(url)
    created = http.post(
        f"{url}/api/v1/models/",
        json={"name": "efficientnet-lite0", "visibility": "internal"},
        timeout=10,
    )
    assert created.status_code == 201, created.text

    with (DEMO / "model.onnx").open("rb") as model, (DEMO / "labels.txt").open("rb") as labels:
        uploaded = http.post(
            f"{url}/api/v1/models/efficientnet-lite0/versions/",
            files={"file": ("model.onnx", model), "labels": ("labels.txt", labels)},
            data={"preprocessing": (DEMO / "preprocessing.json").read_text()},
            timeout=60,
        )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["status"] == "pending"
    assert uploaded.headers["X-Request-ID"]

    def version_done() -> dict | None:
        body = http.get(f"{url}/api/v1/models/efficientnet-lite0/versions/1/", timeout=10).json()
        return body if body["status"] in ("ready", "failed") else None

    try:
        version = wait_for(version_done, 120, "the worker to validate the version")
    except AssertionError:
        print((stack["logs"] / "worker.log").read_text()[-5000:])
        raise
    assert version["status"] == "ready", version["status_reason"]
    assert version["signature"]["inputs"][0]["shape"] == [-1, 3, 224, 224]
    assert version["signature"]["outputs"][0]["shape"] == [-1, 1000]
    assert version["labels_count"] == 1000
    assert version["metrics"]["latency_ms"]["p50"] > 0
    assert version["metrics"]["throughput_per_s"]["items_per_s"] > 0

    aliased = http.put(
        f"{url}/api/v1/models/efficientnet-lite0/aliases/production/",
        json={"version": 1},
        timeout=10,
    )
    assert aliased.status_code == 200, aliased.text
    model = http.get(f"{url}/api/v1/models/efficientnet-lite0/", timeout=10).json()
    assert model["aliases"] == {"production": 1}

    missing = http.get(f"{url}/api/v1/nowhere", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_tritonclient_http_calls_a_live_gunicorn(stack: dict) -> None:
    """NVIDIA's HTTP client, unmodified, against gunicorn: binary tensors, an encoded image with
    the classification extension, gzip; with a JWT, as any Bearer token (needs the model above)."""
    import numpy as np
    import tritonclient.http as httpclient

    url = stack["url"]
    token = login(url).headers["Authorization"]
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        assert client.is_server_ready()
        assert client.is_model_ready("efficientnet-lite0", headers={"Authorization": token})
        tensor = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
        result = client.infer(
            "efficientnet-lite0",
            [tensor],
            headers={"Authorization": token},
            request_compression_algorithm="gzip",
            response_compression_algorithm="gzip",
        )
        assert result.as_numpy("logits").shape == (1, 1000)
        image = httpclient.InferInput("input", [1], "BYTES")
        image.set_data_from_numpy(
            np.array([(ROOT / "demo" / "images" / "coffee.jpg").read_bytes()], np.object_)
        )
        top = client.infer(
            "efficientnet-lite0",
            [image],
            outputs=[httpclient.InferRequestedOutput("logits", class_count=1)],
            headers={"Authorization": token},
        )
        assert top.as_numpy("logits")[0][0].decode().endswith(":967:espresso")
    finally:
        client.close()
    audit = login(url).get(f"{url}/api/v1/predictions/", params={"source": "v2-rest"}, timeout=10).json()
    assert [row["status"] for row in audit["results"]] == ["succeeded", "succeeded"]


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="shared through Redis; the embedded cache is per process"
)
def test_two_server_processes_share_one_throttle(stack: dict) -> None:
    """Registry writes alternate between the two servers; together they get exactly the limit."""
    sessions = [login(url, username="e2e-throttle") for url in stack["urls"]]
    statuses, resets = [], set()
    for attempt in range(REGISTRY_WRITE_LIMIT + 2):
        index = attempt % 2
        response = sessions[index].post(
            f"{stack['urls'][index]}/api/v1/models/", json={"name": f"throttled-{attempt}"}, timeout=10
        )
        statuses.append(response.status_code)
        resets.add(response.headers.get("X-RateLimit-Reset"))
    if len(resets) > 1:
        pytest.skip("the rate window rolled over mid-test; the counts span two windows")
    assert statuses == [201] * REGISTRY_WRITE_LIMIT + [429] * 2


def test_two_server_processes_share_one_quota(stack: dict) -> None:
    """Predictions alternate between the two servers; together they spend exactly the quota."""
    from tests.onnx_models import tiny_classifier

    first, second = (login(url, username="e2e-quota") for url in stack["urls"])
    base = stack["urls"][0]
    assert first.post(f"{base}/api/v1/models/", json={"name": "tiny-quota"}, timeout=10).status_code == 201
    uploaded = first.post(
        f"{base}/api/v1/models/tiny-quota/versions/",
        files={"file": ("tiny.onnx", tiny_classifier(seed=11))},
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text

    def ready() -> bool:
        body = first.get(f"{base}/api/v1/models/tiny-quota/versions/1/", timeout=10).json()
        assert body["status"] != "failed", body["status_reason"]
        return body["status"] == "ready"

    wait_for(ready, 120, "the worker to validate the tiny model")
    aliased = first.put(
        f"{base}/api/v1/models/tiny-quota/aliases/production/", json={"version": 1}, timeout=10
    )
    assert aliased.status_code == 200, aliased.text

    inputs = {"inputs": {"input": [[[[0.5] * 8] * 8] * 3]}}
    statuses, codes = [], []
    for attempt in range(MONTHLY_QUOTA + 2):
        session, url = (first, stack["urls"][0]) if attempt % 2 == 0 else (second, stack["urls"][1])
        response = session.post(f"{url}/api/v1/models/tiny-quota/predict", json=inputs, timeout=30)
        statuses.append(response.status_code)
        codes.append(response.json().get("error", {}).get("code"))
    assert statuses == [200] * MONTHLY_QUOTA + [429] * 2, codes
    assert codes[-1] == "quota_exceeded"
    usage = second.get(f"{stack['urls'][1]}/api/v1/me/usage/", timeout=10).json()
    assert usage["predictions_used"] == MONTHLY_QUOTA
    audit = first.get(f"{base}/api/v1/predictions/", params={"model": "tiny-quota"}, timeout=10).json()
    assert sorted(row["status"] for row in audit["results"]) == ["failed"] * 2 + ["succeeded"] * MONTHLY_QUOTA
