"""Routing under a rollout: deterministic and sticky per routing key, never for a version
number, on every door, and recorded in the answer, the job and the audit row."""

import math

import numpy as np
import pytest

from apps.accounts.models import ApiKey
from apps.inference.models import Prediction
from apps.inference.targets import resolve_target
from apps.jobs.models import BatchJob
from apps.jobs.services import job_run
from apps.oip.grpc.calls import Call
from apps.rollouts.routing import Split, bucket, routing_key
from tests.rollouts.conftest import BODY, key_in, predict, start

pytestmark = pytest.mark.django_db


def test_a_bucket_is_stable_and_depends_on_the_rollout():
    assert bucket(1, "given:a") == bucket(1, "given:a")
    assert 0 <= bucket(1, "given:a") < 100
    assert len({bucket(r, "given:a") for r in range(50)}) > 10


def test_the_split_lays_keys_against_cumulative_weights(tiny_version, candidate):
    split = Split(rollout_id=1, candidates=((10, candidate), (30, tiny_version)))
    for n in range(300):
        point = bucket(1, f"k{n}")
        version, route = split.choose(tiny_version, f"k{n}")
        assert route == ("canary" if point < 30 else "primary")
        assert version == (candidate if point < 10 else tiny_version)


def test_the_default_key_is_the_api_key_else_the_user(user):
    key = ApiKey(pk=7, owner=user)
    assert routing_key(given="", user=user, api_key=key) == "key:7"
    assert routing_key(given="", user=user, api_key=None) == f"user:{user.pk}"
    assert routing_key(given="x", user=user, api_key=key) == "given:x"


def test_one_key_always_gets_one_version_and_the_answer_says_why(api, candidate):
    rollout_id = start(api).json()["id"]
    canary, primary = key_in(rollout_id, True), key_in(rollout_id, False)
    for _ in range(3):
        answer = predict(api, canary).json()
        assert (answer["version"], answer["alias"], answer["route"]) == (2, "production", "canary")
        answer = predict(api, primary).json()
        assert (answer["version"], answer["route"]) == (1, "primary")
    rows = Prediction.objects.order_by("id").values_list("version_number", "route", "alias")
    assert list(rows) == [(2, "canary", "production"), (1, "primary", "production")] * 3
    trail = api.get("/api/v1/predictions/").json()["results"]
    assert [(r["version"], r["route"]) for r in trail[:2]] == [(1, "primary"), (2, "canary")]


def test_without_a_rollout_the_route_is_null_and_the_audit_column_empty(api, tiny_version):
    assert predict(api, "anyone").json()["route"] is None
    assert Prediction.objects.get().route == ""


def test_an_explicit_version_is_never_rerouted(api, candidate):
    rollout_id = start(api).json()["id"]
    canary = key_in(rollout_id, True)
    answer = predict(api, canary, query="?version=1").json()
    assert (answer["version"], answer["alias"], answer["route"]) == (1, None, None)
    assert Prediction.objects.get().route == ""


def test_without_a_header_the_api_key_routes(key_client, candidate, api):
    rollout_id = start(api, [(2, 50)]).json()["id"]
    client = key_client()
    expected = 2 if bucket(rollout_id, f"key:{client.api_key.pk}") < 50 else 1
    assert {predict(client).json()["version"] for _ in range(3)} == {expected}


def test_a_job_routes_and_records_its_route(api, candidate):
    rollout_id = start(api).json()["id"]
    canary = key_in(rollout_id, True)
    body = {"model": "tiny", "images": [BODY["image"]] * 2}
    response = api.post("/api/v1/jobs/", body, format="json", HTTP_X_ROUTING_KEY=canary)
    assert response.status_code == 202, response.content
    assert (response.json()["version"], response.json()["route"]) == (2, "canary")
    job = BatchJob.objects.get()
    assert (job.version_number, job.route) == (2, "canary")
    assert job_run(job_id=str(job.pk)) == "succeeded"
    assert set(Prediction.objects.values_list("source", "version_number", "route")) == {("job", 2, "canary")}


def test_the_v2_rest_door_routes(api, candidate):
    rollout_id = start(api).json()["id"]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0] * 192}]}
    for canary, version in ((True, "2"), (False, "1")):
        key = key_in(rollout_id, canary)
        response = api.post("/v2/models/tiny/infer", body, format="json", HTTP_X_ROUTING_KEY=key)
        assert response.status_code == 200, response.content
        assert response.json()["model_version"] == version
    assert list(Prediction.objects.order_by("id").values_list("source", "route")) == [
        ("v2-rest", "canary"),
        ("v2-rest", "primary"),
    ]
    # A version in the path is never rerouted.
    key = key_in(rollout_id, True)
    response = api.post("/v2/models/tiny/versions/1/infer", body, format="json", HTTP_X_ROUTING_KEY=key)
    assert response.json()["model_version"] == "1"


def test_the_grpc_door_reads_the_routing_key_from_metadata(user, candidate, api):
    rollout_id = start(api).json()["id"]
    key = key_in(rollout_id, True)

    class Context:
        def invocation_metadata(self):
            return [("x-routing-key", key)]

        def peer(self):
            return "ipv4:127.0.0.1:5000"

    call = Call(Context(), "ModelInfer")
    call.user = user
    caller = call.caller()
    assert caller.routing_key == key
    target = resolve_target(
        user=user, api_key=None, name="tiny", version=None, alias=None, routing_key=caller.routing_key
    )
    assert (target.version.number, target.route) == (2, "canary")


def test_90_10_over_1000_requests_from_200_keys_is_sticky_and_within_the_binomial_bound(api, candidate):
    """Each of 200 keys asks 5 times. Keys land on the canary independently with p = 0.1, so
    the number on the canary is Binomial(200, 0.1): mean 20, sd sqrt(200 * 0.1 * 0.9) = 4.24.
    The bound is mean ± 4 sd (a fair split falls outside it with probability < 1e-4)."""
    start(api, [(2, 10)])
    seen: dict[str, set[int]] = {}
    for _ in range(5):
        for n in range(200):
            answer = predict(api, f"client-{n}").json()
            seen.setdefault(f"client-{n}", set()).add(answer["version"])
    assert all(len(versions) == 1 for versions in seen.values())
    on_canary = sum(1 for versions in seen.values() if versions == {2})
    mean, sd = 200 * 0.1, math.sqrt(200 * 0.1 * 0.9)
    assert mean - 4 * sd <= on_canary <= mean + 4 * sd, on_canary
    assert Prediction.objects.filter(route="canary").count() == 5 * on_canary
    assert np.isclose(Prediction.objects.count(), 1000)
