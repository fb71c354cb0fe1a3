"""Each bad shadow request: a clear 4xx in the error shape, and the alias left as it was."""

import onnx
import pytest

from apps.rollouts.models import Rollout
from tests import onnx_models
from tests.inference.conftest import TINY_PREPROCESSING, ready_version
from tests.rollouts.conftest import start, start_shadow
from tests.rollouts.test_start_bad_input import assert_refused

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("percent", [0, 101, -1])
def test_a_shadow_percent_out_of_range_is_400(api, candidate, percent):
    error = assert_refused(start_shadow(api, percent=percent), 400, "invalid_shadow", candidate.model)
    assert error["details"] == {"shadow_percent": percent}


def test_a_shadow_percent_without_a_shadow_version_is_400(api, candidate):
    response = start(api, shadow_percent=50)
    assert_refused(response, 400, "invalid_shadow", candidate.model)


def test_the_primary_cannot_shadow_itself(api, candidate):
    assert_refused(start_shadow(api, version=1), 400, "invalid_shadow", candidate.model)


def test_a_rollout_needs_a_candidate_or_a_shadow(api, candidate):
    assert_refused(start(api, versions=()), 400, "invalid_candidates", candidate.model)


@pytest.mark.parametrize("status", ["pending", "failed", "archived"])
def test_a_shadow_that_is_not_ready_is_409(api, candidate, status):
    candidate.status = status
    candidate.save()
    assert_refused(start_shadow(api), 409, "version_not_ready", candidate.model)


def test_an_unknown_shadow_version_is_404(api, candidate):
    assert_refused(start_shadow(api, version=9), 404, "version_not_found", candidate.model)


def test_a_shadow_with_other_labels_is_409_and_says_what_differs(api, candidate):
    candidate.labels = ["x", "y", "z"]
    candidate.save()
    error = assert_refused(start_shadow(api), 409, "candidate_incompatible", candidate.model)
    assert error["details"]["labels"] == {"primary": ["a", "b", "c"], "candidate": ["x", "y", "z"]}


def test_a_shadow_taking_other_inputs_is_409(api, tiny_version):
    model = onnx.load_from_string(onnx_models.tiny_classifier(seed=3))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 16  # 16x16 images: the same outputs and labels, other inputs
    wider = ready_version(
        tiny_version.model,
        model.SerializeToString(),
        number=2,
        alias=None,
        labels=["a", "b", "c"],
        preprocessing={**TINY_PREPROCESSING, "resize": 16, "crop": 16},
    )
    error = assert_refused(start_shadow(api), 409, "candidate_incompatible", wider.model)
    assert set(error["details"]["inputs"]) == {"primary", "candidate"}


def test_the_shadow_version_is_neither_archived_nor_deleted_while_the_rollout_runs(api, candidate):
    assert start_shadow(api).status_code == 201
    response = api.post("/api/v1/models/tiny/versions/2/archive/")
    assert_refused(response, 409, "version_in_rollout", candidate.model, active=1)
    assert Rollout.objects.get().shadow_id == candidate.pk
