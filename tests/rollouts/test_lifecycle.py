"""A rollout's life: start, watch (detail, comparison), promote or abort, or a guard rail
that stops a bad candidate; the alias history stays right throughout."""

import pytest
from django.urls import reverse

from apps.inference.models import Prediction
from apps.registry.models import ModelAliasHistory
from apps.rollouts.guards import check_guards
from apps.rollouts.models import Rollout
from tests import onnx_models
from tests.inference.conftest import TINY_PREPROCESSING, ready_version
from tests.rollouts.conftest import key_in, predict, production, start
from workers.rollouts import check_guards as check_guards_task

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/tiny/rollouts/"


def history(model) -> list[tuple]:
    rows = ModelAliasHistory.objects.filter(model=model).order_by("id")
    return list(rows.values_list("action", "from_number", "to_number"))


def test_a_started_rollout_reads_back_with_its_split(api, candidate, user):
    response = start(api, [(2, 25)], max_error_rate=0.1, min_requests=20)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active" and body["alias"] == "production"
    assert (body["primary"], body["primary_weight"], body["candidates"]) == (
        1,
        75,
        [{"version": 2, "weight": 25}],
    )
    assert (body["max_error_rate"], body["min_requests"], body["created_by"]) == (0.1, 20, "alice")
    assert api.get(URL).json()["results"][0]["id"] == body["id"]


def test_promote_moves_the_alias_to_the_candidate_and_records_it(api, candidate):
    rollout_id = start(api).json()["id"]
    response = api.post(f"{URL}{rollout_id}/promote", {}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["promoted_to"]) == ("promoted", 2)
    assert production(candidate.model) == 2
    assert history(candidate.model) == [("move", 1, 2)]
    # The split is over: everyone gets the promoted version, with no route.
    answer = predict(api, key_in(rollout_id, False)).json()
    assert (answer["version"], answer["route"]) == (2, None)
    again = api.post(f"{URL}{rollout_id}/promote", {}, format="json")
    assert again.json()["error"]["code"] == "rollout_not_active"


def test_promote_names_the_version_when_there_are_several_candidates(api, candidate):
    ready_version(
        candidate.model, onnx_models.tiny_classifier(seed=9), number=3, alias=None, labels=["a", "b", "c"]
    )
    rollout_id = start(api, [(2, 10), (3, 10)]).json()["id"]
    response = api.post(f"{URL}{rollout_id}/promote", {}, format="json")
    assert response.json()["error"]["code"] == "version_required"
    assert api.post(f"{URL}{rollout_id}/promote", {"version": 3}, format="json").status_code == 200
    assert production(candidate.model) == 3


def test_abort_ends_the_rollout_and_the_alias_never_moved(api, candidate):
    rollout_id = start(api).json()["id"]
    response = api.post(f"{URL}{rollout_id}/abort", {"reason": "not today"}, format="json")
    assert (response.json()["status"], response.json()["reason"]) == ("aborted", "not today")
    assert production(candidate.model) == 1 and history(candidate.model) == []
    assert predict(api, key_in(rollout_id, True)).json()["version"] == 1
    assert start(api).status_code == 201  # the alias is free for the next rollout


def test_the_comparison_reports_each_version(api, candidate):
    rollout_id = start(api, [(2, 50)]).json()["id"]
    for n in range(3):
        predict(api, key_in(rollout_id, True, weight=50, prefix=f"c{n}-"))
    predict(api, key_in(rollout_id, False, weight=50))
    predict(api, key_in(rollout_id, True), query="?version=2")  # pinned: not the rollout's
    response = api.get(f"{URL}{rollout_id}/comparison")
    assert response.status_code == 200, response.content
    primary, canary = response.json()["versions"]
    assert (primary["version"], primary["route"], primary["requests"]) == (1, "primary", 1)
    assert (canary["version"], canary["route"], canary["requests"], canary["failed"]) == (2, "canary", 3, 0)
    assert sum(canary["top1"].values()) == 3 and set(canary["top1"]) <= {"a", "b", "c"}
    assert 0 < canary["mean_top1_score"] <= 1 and canary["latency_p95_ms"] >= canary["latency_p50_ms"]
    assert api.get(f"{URL}{rollout_id}/").json()["requests"] == {"1": 1, "2": 3}
    later = api.get(f"{URL}{rollout_id}/comparison", {"since": "2999-01-01T00:00:00Z"}).json()
    assert [v["requests"] for v in later["versions"]] == [0, 0]
    bad = api.get(f"{URL}{rollout_id}/comparison", {"since": "yesterday"})
    assert bad.status_code == 400


def test_a_guard_rail_stops_a_candidate_whose_every_answer_fails(api, tiny_version):
    # Same outputs and labels as the primary, but preprocessing that feeds it 16x16 images:
    # the model refuses every one.
    broken = {**TINY_PREPROCESSING, "resize": 16, "crop": 16}
    ready_version(
        tiny_version.model, onnx_models.tiny_classifier(seed=7), number=2, alias=None,
        labels=["a", "b", "c"], preprocessing=broken,
    )  # fmt: skip
    rollout_id = start(api, [(2, 50)], max_error_rate=0.2, min_requests=5).json()["id"]
    for n in range(4):
        assert predict(api, key_in(rollout_id, True, weight=50, prefix=f"b{n}-")).status_code >= 400
    assert check_guards() == []  # 4 answers: fewer than min_requests
    predict(api, key_in(rollout_id, True, weight=50, prefix="b9-"))
    check_guards_task()
    rollout = Rollout.objects.get()
    assert rollout.status == "stopped"
    assert rollout.reason == "v2 over 5 requests: error rate 1.000 > 0.2"
    assert production(tiny_version.model) == 1 and history(tiny_version.model) == []
    assert predict(api, key_in(rollout_id, True)).json()["version"] == 1


def test_a_guard_rail_stops_a_slow_candidate(api, candidate):
    rollout_id = start(api, [(2, 10)], max_latency_p95_ms=100, min_requests=20).json()["id"]
    fields = {"model_name": "tiny", "alias": "production", "status": "succeeded"}
    for n in range(20):
        Prediction.objects.create(**fields, version_number=1, route="primary", latency_ms=5)
        Prediction.objects.create(
            **fields, version_number=2, route="canary", latency_ms=50 if n < 19 else 900
        )
    assert check_guards() == []  # p95 of 20 answers, nearest rank: the 19th, still fast
    Prediction.objects.create(**fields, version_number=2, route="canary", latency_ms=900)
    assert check_guards() == [rollout_id]  # of 21: the 20th, slow
    assert Rollout.objects.get().reason == "v2 over 21 requests: latency p95 900.0 ms > 100.0 ms"


def test_the_admin_shows_a_rollout_with_its_candidates(client, staff_user, api, candidate):
    rollout_id = start(api).json()["id"]
    client.force_login(staff_user)
    page = client.get(reverse("admin:rollouts_rollout_change", args=[rollout_id]))
    assert page.status_code == 200
    assert b"requests per version" in page.content.lower() and b"tiny v2" in page.content
    assert client.get(reverse("admin:rollouts_rollout_changelist")).status_code == 200
