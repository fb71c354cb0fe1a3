"""`mlp rollout start|status|promote|abort` against a live server (Django's, in a thread, on the
test database): the commands send what the API takes and print what it answers."""

import json
import sys
from pathlib import Path

import pytest

from apps.accounts.services.api_keys import api_key_create
from apps.registry.models import ModelAlias, ModelAliasHistory
from apps.rollouts.models import Rollout
from tests import onnx_models
from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    TINY_PREPROCESSING,
    fresh_session_cache,
    ready_version,
    tiny_version,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client"))
from mlplatform_client import cli

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mlp(live_server, user, capsys):
    key = api_key_create(owner=user, name="cli", scopes=["models:read", "models:write", "predict"]).key

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main([*args, "--url", live_server.url, "--key", key])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def versions(tiny_version):  # noqa: F811 (the imported fixture, requested)
    for number in (2, 3):
        ready_version(
            tiny_version.model, onnx_models.tiny_classifier(seed=number), number=number, alias=None,
            labels=["a", "b", "c"], preprocessing=dict(TINY_PREPROCESSING),
        )  # fmt: skip
    return tiny_version.model


def test_start_status_and_promote(mlp, versions):
    start = ["rollout", "start", "tiny", "--canary", "2:10", "--shadow", "3", "--shadow-percent", "50"]
    code, out, err = mlp(*start, "--max-error-rate", "0.1")
    assert code == 0, (out, err)
    rollout = Rollout.objects.get()
    assert (rollout.primary.number, rollout.shadow.number, rollout.shadow_percent) == (1, 3, 50)
    assert [(c.version.number, c.weight) for c in rollout.candidates.all()] == [(2, 10)]
    assert rollout.max_error_rate == 0.1
    assert f"rollout {rollout.pk} of tiny@production: active" in out
    assert "split: v1 90% (primary), v2 10% (canary)" in out and "shadow: v3 at 50%, active" in out

    code, out, _ = mlp("rollout", "status", "tiny")  # the active one, with its comparison
    assert code == 0 and f"rollout {rollout.pk}" in out and "v1 primary: 0 requests" in out
    code, out, _ = mlp("rollout", "status", "tiny", str(rollout.pk), "--json")
    shown = json.loads(out)
    assert shown["rollout"]["id"] == rollout.pk and shown["comparison"]["shadow"]["version"] == 3

    code, out, _ = mlp("rollout", "promote", "tiny", str(rollout.pk))
    assert code == 0 and ": promoted (v2 promoted)" in out
    assert ModelAlias.objects.get(name="production").version.number == 2
    assert ModelAliasHistory.objects.filter(action="move").count() == 1


def test_abort_leaves_the_alias_and_a_refusal_prints_the_error(mlp, versions):
    code, out, err = mlp("rollout", "start", "tiny", "--canary", "2:10")
    assert code == 0, err
    rollout = Rollout.objects.get()
    code, out, _ = mlp("rollout", "abort", "tiny", str(rollout.pk), "--reason", "not now")
    assert code == 0 and ": aborted (not now)" in out
    assert ModelAlias.objects.get(name="production").version.number == 1
    code, _, err = mlp("rollout", "promote", "tiny", str(rollout.pk))
    assert code == 1 and "error rollout_not_active" in err
    code, _, err = mlp("rollout", "start", "tiny", "--canary", "2:100")
    assert code == 1 and "error invalid_weights" in err
    code, _, err = mlp("rollout", "start", "tiny", "--canary", "two")
    assert code == 2 and "expected VERSION:WEIGHT" in err
    code, _, err = mlp("rollout", "status", "tiny")
    assert code == 1 and "no active rollout" in err
