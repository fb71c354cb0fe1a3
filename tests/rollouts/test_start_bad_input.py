"""Each bad rollout request: a clear 4xx in the error shape, and the alias left as it was."""

import pytest
from django.db.models import RestrictedError

from apps.core.exceptions import Conflict
from apps.registry.models import ModelAliasHistory, ModelGrant, ModelVersion
from apps.rollouts.models import Rollout
from apps.rollouts.services import check_compatible
from tests import onnx_models
from tests.factories import MLModelFactory, UserFactory
from tests.inference.conftest import TINY_PREPROCESSING, ready_version
from tests.rollouts.conftest import predict, production, start

pytestmark = pytest.mark.django_db


def assert_refused(response, status: int, code: str, model, active: int = 0) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and "request_id" in error
    assert production(model) == 1
    assert Rollout.objects.filter(status="active").count() == active
    return error


@pytest.mark.parametrize("weights", [(-5,), (0,), (100,), (60, 40)])
def test_it_refuses_weights_that_leave_the_primary_no_share(api, candidate, weights):
    third = ready_version(
        candidate.model, onnx_models.tiny_classifier(seed=9), number=3, alias=None, labels=["a", "b", "c"]
    )
    versions = list(zip((2, third.number), weights, strict=False))
    error = assert_refused(start(api, versions), 400, "invalid_weights", candidate.model)
    assert error["details"]["primary"] == 100 - sum(weights)


def test_it_refuses_a_candidate_that_is_the_primary_or_named_twice(api, candidate):
    assert_refused(start(api, [(1, 10)]), 400, "invalid_candidates", candidate.model)
    assert_refused(start(api, [(2, 10), (2, 5)]), 400, "invalid_candidates", candidate.model)


@pytest.mark.parametrize("status", ["pending", "failed", "archived"])
def test_it_refuses_a_candidate_that_is_not_ready(api, candidate, status):
    ModelVersion.objects.filter(pk=candidate.pk).update(status=status)
    error = assert_refused(start(api), 409, "version_not_ready", candidate.model)
    assert error["details"] == {"version": 2, "status": status}


def test_it_refuses_a_candidate_of_another_model(api, candidate):
    other = ready_version(MLModelFactory(name="other"), onnx_models.tiny_classifier(seed=3), alias=None)
    with pytest.raises(Conflict) as refused:
        check_compatible(primary=candidate.model.aliases.get().version, candidate=other)
    assert refused.value.code == "candidate_of_another_model"
    # By the API a version is named under its model: another model's is not found here.
    assert_refused(start(api, [(7, 10)]), 404, "version_not_found", candidate.model)


def test_it_refuses_a_candidate_with_other_outputs_and_says_what_differs(api, tiny_version):
    ready_version(
        tiny_version.model,
        onnx_models.tiny_classifier(classes=4),
        number=2,
        alias=None,
        labels=["a", "b", "c", "d"],
        preprocessing=dict(TINY_PREPROCESSING),
    )
    error = assert_refused(start(api), 409, "candidate_incompatible", tiny_version.model)
    assert set(error["details"]) == {"version", "outputs", "labels"}
    assert error["details"]["labels"] == {"primary": ["a", "b", "c"], "candidate": ["a", "b", "c", "d"]}


def test_it_refuses_a_candidate_with_other_labels(api, candidate):
    ModelVersion.objects.filter(pk=candidate.pk).update(labels=["c", "b", "a"])
    error = assert_refused(start(api), 409, "candidate_incompatible", candidate.model)
    assert set(error["details"]) == {"version", "labels"}


def test_it_refuses_a_second_rollout_on_one_alias(api, candidate):
    assert start(api).status_code == 201
    error = assert_refused(start(api, [(2, 20)]), 409, "rollout_exists", candidate.model, active=1)
    assert error["details"]["rollout"] == Rollout.objects.get().pk


def test_an_alias_under_a_rollout_is_neither_moved_nor_deleted_by_hand(api, candidate):
    assert start(api).status_code == 201
    moved = api.put("/api/v1/models/tiny/aliases/production/", {"version": 2}, format="json")
    assert_refused(moved, 409, "rollout_active", candidate.model, active=1)
    deleted = api.delete("/api/v1/models/tiny/aliases/production/")
    assert_refused(deleted, 409, "rollout_active", candidate.model, active=1)


def test_a_version_in_a_rollout_is_neither_archived_nor_deleted(api, candidate):
    assert start(api).status_code == 201
    response = api.post("/api/v1/models/tiny/versions/2/archive/")
    assert_refused(response, 409, "version_in_rollout", candidate.model, active=1)
    with pytest.raises(RestrictedError):
        candidate.delete()
    assert ModelVersion.objects.get(pk=candidate.pk).status == "ready"


def test_deleting_the_model_takes_its_rollouts_with_it(api, candidate):
    assert start(api).status_code == 201
    assert api.delete("/api/v1/models/tiny/").status_code == 204
    assert not Rollout.objects.exists()


def test_a_routing_key_over_256_bytes_is_400(api, candidate):
    assert start(api).status_code == 201
    response = predict(api, key="é" * 129)  # 258 bytes in UTF-8
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_routing_key"
    assert predict(api, key="k" * 256).status_code == 200


def test_promoting_a_stopped_rollout_is_409(api, candidate):
    rollout_id = start(api).json()["id"]
    Rollout.objects.filter(pk=rollout_id).update(status="stopped", reason="error rate")
    response = api.post(f"/api/v1/models/tiny/rollouts/{rollout_id}/promote", {}, format="json")
    error = assert_refused(response, 409, "rollout_not_active", candidate.model)
    assert error["details"] == {"status": "stopped", "reason": "error rate"}
    assert not ModelAliasHistory.objects.filter(action="move").exists()


def test_only_owners_and_maintainers_run_rollouts(candidate, client_for):
    consumer, maintainer, stranger = (UserFactory(username=n) for n in ("carol", "dave", "eve"))
    ModelGrant.objects.create(model=candidate.model, user=consumer, role="consumer")
    ModelGrant.objects.create(model=candidate.model, user=maintainer, role="maintainer")
    assert_refused(start(client_for(consumer)), 403, "permission_denied", candidate.model)
    assert_refused(start(client_for(stranger)), 404, "model_not_found", candidate.model)
    rollout_id = start(client_for(maintainer)).json()["id"]
    abort = f"/api/v1/models/tiny/rollouts/{rollout_id}/abort"
    assert client_for(consumer).post(abort, {}, format="json").status_code == 403
    assert client_for(consumer).get(f"/api/v1/models/tiny/rollouts/{rollout_id}/").status_code == 200
    assert client_for(maintainer).post(abort, {}, format="json").status_code == 200
