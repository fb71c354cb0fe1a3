"""Shadow traffic in process (Celery eager, SHADOW_BATCH_SECONDS=0): the caller's answer is the
primary's; the shadow's rows are linked, owned by the model's owner, written once."""

import base64

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from PIL import Image

from apps.accounts.models import QuotaUsage
from apps.core import tasks
from apps.inference.models import Prediction
from apps.registry.models import ModelGrant
from apps.registry.storage import model_store
from apps.rollouts import metrics, shadowing
from apps.rollouts.models import Rollout
from apps.rollouts.routing import bucket
from apps.rollouts.shadow_runs import shadow_inputs_sweep, shadow_run
from tests.factories import UserFactory
from tests.inference.conftest import encode
from tests.rollouts.conftest import BODY, PNG, start_shadow

pytestmark = pytest.mark.django_db

COLOURS = ("blue", "red", "green", "yellow", "white", "purple")


class Committing:
    """An API client whose each request runs its on-commit callbacks (the shadow's hand-off
    waits for the request's commit; a test's own transaction never commits)."""

    def __init__(self, client, capture) -> None:
        self.client, self.capture = client, capture

    def post(self, *args, **kwargs):
        with self.capture(execute=True):
            return self.client.post(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.client, name)


@pytest.fixture
def client_for(client_for, django_capture_on_commit_callbacks):
    """Every client of these tests, `api` included (it is built by this fixture)."""
    return lambda user: Committing(client_for(user), django_capture_on_commit_callbacks)


def images_body(*colours: str) -> dict:
    pngs = [encode(Image.new("RGB", (8, 8), c), "PNG") for c in colours]
    return {"images": [base64.b64encode(p).decode() for p in pngs]}


def stored_shadow_inputs() -> list[str]:
    try:
        return model_store.listdir(shadowing.STORAGE_FOLDER)[1]
    except FileNotFoundError:
        return []


def test_a_shadow_writes_one_linked_row_per_input_and_the_answer_is_the_primarys(api, candidate, user):
    assert start_shadow(api).status_code == 201
    response = api.post("/api/v1/models/tiny/predict", images_body("blue", "red"), format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["version"], answer["route"]) == (1, "primary")
    primary = list(Prediction.objects.filter(source="sync").order_by("id"))
    shadows = list(Prediction.objects.filter(source="shadow").order_by("input_index"))
    assert [(p.version_number, p.route) for p in primary] == [(1, "primary")] * 2
    assert [(s.version_number, s.route, s.input_index) for s in shadows] == [
        (2, "shadow", 0),
        (2, "shadow", 1),
    ]
    assert {s.request_id for s in shadows} == {answer["request_id"]}
    assert [s.input_sha256 for s in shadows] == [p.input_sha256 for p in primary]
    assert all(s.user_id == user.pk and s.api_key_id is None and s.status == "succeeded" for s in shadows)
    assert stored_shadow_inputs() == []  # deleted once the shadow ran


def test_the_shadow_is_invisible_in_the_callers_trail_and_spends_no_quota(api, candidate, client_for):
    caller, maintainer = UserFactory(username="carol"), UserFactory(username="dave")
    ModelGrant.objects.create(model=candidate.model, user=caller, role="consumer")
    ModelGrant.objects.create(model=candidate.model, user=maintainer, role="maintainer")
    assert start_shadow(api).status_code == 201
    assert client_for(caller).post("/api/v1/models/tiny/predict", BODY, format="json").status_code == 200
    assert Prediction.objects.filter(source="shadow").count() == 1

    def trail(client) -> list[str]:
        return [row["source"] for row in client.get("/api/v1/predictions/").json()["results"]]

    assert trail(client_for(caller)) == ["sync"]
    assert trail(client_for(maintainer)) == ["shadow"]
    assert trail(api) == ["shadow"]  # the owner's
    assert QuotaUsage.objects.get(user=caller).used == 1
    assert not QuotaUsage.objects.filter(user=candidate.model.owner).exists()


def test_only_a_sample_of_requests_is_shadowed_by_request_id(api, candidate):
    rollout_id = start_shadow(api, percent=30).json()["id"]
    ids = [f"req-{n}" for n in range(20)]
    for request_id in ids:
        api.post("/api/v1/models/tiny/predict", BODY, format="json", HTTP_X_REQUEST_ID=request_id)
    chosen = {i for i in ids if bucket(rollout_id, f"shadow\x00{i}") < 30}
    assert 0 < len(chosen) < len(ids)
    assert set(Prediction.objects.filter(source="shadow").values_list("request_id", flat=True)) == chosen


def test_a_canary_answer_is_not_shadowed(api, candidate):
    from tests.rollouts.conftest import key_in, predict, ready_version, TINY_PREPROCESSING  # noqa: I001
    from tests import onnx_models

    ready_version(
        candidate.model,
        onnx_models.tiny_classifier(seed=5),
        number=3,
        alias=None,
        labels=["a", "b", "c"],
        preprocessing=dict(TINY_PREPROCESSING),
    )
    rollout_id = start_shadow(api, version=3, candidates=[(2, 50)]).json()["id"]
    assert predict(api, key_in(rollout_id, True, weight=50)).json()["route"] == "canary"
    assert not Prediction.objects.filter(source="shadow").exists()
    assert predict(api, key_in(rollout_id, False, weight=50)).json()["route"] == "primary"
    assert Prediction.objects.filter(source="shadow", version_number=3).count() == 1


def test_a_retried_shadow_task_writes_once(api, candidate):
    rollout = Rollout.objects.get(pk=start_shadow(api).json()["id"])
    item = shadowing.Mirrored(request_id="r-1", top_k=3)
    item.inputs.append({"kind": "image", "data": PNG, "content_type": "image/png"})
    message = {
        "rollout": rollout.pk,
        "version": candidate.pk,
        "requests": [
            {"request_id": "r-1", "top_k": 3, "inputs": [{"kind": "image", "content_type": "image/png"}]}
        ],
    }
    assert shadow_run({**message, "input_name": shadowing.store([item])}) == 1
    assert shadow_run({**message, "input_name": shadowing.store([item])}) == 0  # a second delivery
    assert Prediction.objects.filter(source="shadow", request_id="r-1").count() == 1
    assert stored_shadow_inputs() == []
    row = Prediction.objects.get(source="shadow")
    row.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()  # the database itself refuses a second row for one input


def test_the_oip_door_shadows_tensors_too(api, candidate):
    assert start_shadow(api).status_code == 201
    data = np.linspace(-1, 1, 192).tolist()
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": data}]}
    assert api.post("/v2/models/tiny/infer", body, format="json").status_code == 200
    shadow = Prediction.objects.get(source="shadow")
    primary = Prediction.objects.get(source="v2-rest")
    assert (shadow.request_id, shadow.input_index, shadow.version_number) == (primary.request_id, 0, 2)
    assert shadow.input_sha256 == primary.input_sha256  # the same tensors, as the model got them


def test_a_batch_for_a_stopped_shadow_is_dropped_and_counted(api, candidate):
    rollout = Rollout.objects.get(pk=start_shadow(api).json()["id"])
    item = shadowing.Mirrored(request_id="r-2", top_k=3)
    item.inputs.append({"kind": "image", "data": PNG, "content_type": "image/png"})
    name = shadowing.store([item])
    api.post(f"/api/v1/models/tiny/rollouts/{rollout.pk}/abort", {}, format="json")
    message = {
        "rollout": rollout.pk,
        "version": candidate.pk,
        "input_name": name,
        "requests": [{"request_id": "r-2", "top_k": 3, "inputs": [{"kind": "image"}]}],
    }
    assert shadow_run(message) == 0
    rollout.refresh_from_db()
    assert rollout.shadow_dropped == 1
    assert stored_shadow_inputs() == []


def test_the_shadow_queue_past_its_bound_drops_and_counts(api, candidate, settings):
    if shadowing.queue_backlog() is None:
        pytest.skip("the drop rule reads the queue's length from a Redis broker")
    import redis

    settings.SHADOW_QUEUE_MAX_BACKLOG = 2
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = "shadow-test-backlog"
    tasks.registered(tasks.RUN_SHADOW)  # its profile read the real queue's name first
    settings.SHADOW_QUEUE = queue  # the length the drop rule reads
    broker.delete(queue)
    rollout = Rollout.objects.get(pk=start_shadow(api).json()["id"])
    dropped_before = metrics.SHADOW_DROPPED.labels("tiny", "2", "backlog")._value.get()
    try:
        broker.rpush(queue, "waiting-1", "waiting-2")  # two messages behind: at the bound
        api.post("/api/v1/models/tiny/predict", images_body("blue", "red"), format="json")
        assert not Prediction.objects.filter(source="shadow").exists()
        rollout.refresh_from_db()
        assert rollout.shadow_dropped == 2
        assert metrics.SHADOW_DROPPED.labels("tiny", "2", "backlog")._value.get() == dropped_before + 2
        broker.lpop(queue)  # one behind: under the bound again
        api.post("/api/v1/models/tiny/predict", BODY, format="json")
        assert Prediction.objects.filter(source="shadow").count() == 1
    finally:
        broker.delete(queue)


def test_the_retention_sweep_deletes_only_old_orphans(settings):
    import datetime

    from django.core.files.base import ContentFile
    from django.utils import timezone

    now = timezone.now()
    old = model_store.save(
        f"shadows/{(now - datetime.timedelta(hours=25)):%Y%m%d%H%M%S}-a.bin", ContentFile(b"x")
    )
    new = model_store.save(
        f"shadows/{(now - datetime.timedelta(hours=1)):%Y%m%d%H%M%S}-b.bin", ContentFile(b"x")
    )
    try:
        assert shadow_inputs_sweep(now) == 1
        assert not model_store.exists(old) and model_store.exists(new)
    finally:
        model_store.delete(new)


@pytest.mark.django_db(transaction=True)
def test_the_sender_thread_sends_requests_in_batches(api, candidate, settings, monkeypatch):
    settings.SHADOW_BATCH_SECONDS = 0.05
    sent = []
    real_send = shadowing.send
    monkeypatch.setattr(shadowing, "send", lambda *args: sent.append(len(args[2])) or real_send(*args))
    monkeypatch.setattr(shadowing, "sender", shadowing.Sender())
    assert start_shadow(api).status_code == 201
    for _ in range(3):
        assert api.post("/api/v1/models/tiny/predict", BODY, format="json").status_code == 200
    shadowing.sender.close()  # what the thread has not sent yet, now; and the thread ends
    assert sum(sent) == 3 and len(sent) <= 3
    assert Prediction.objects.filter(source="shadow").count() == 3


def test_the_comparison_pairs_the_shadow_with_the_primary(api, reversed_version):
    rollout_id = start_shadow(api).json()["id"]
    for colour in COLOURS:
        assert api.post("/api/v1/models/tiny/predict", images_body(colour), format="json").status_code == 200
    comparison = api.get(f"/api/v1/models/tiny/rollouts/{rollout_id}/comparison").json()
    routes = {v["route"]: v for v in comparison["versions"]}
    assert routes["primary"]["requests"] == routes["shadow"]["requests"] == len(COLOURS)
    shadow = comparison["shadow"]
    assert (shadow["version"], shadow["shadow_rows"], shadow["pairs"], shadow["comparable"]) == (2, 6, 6, 6)
    expected_agree, diffs = 0, []
    for colour in COLOURS:  # recomputed from the rows, pair by pair
        mine = Prediction.objects.get(source="sync", request_id=_request_of(colour)).output["top_k"]
        theirs = Prediction.objects.get(source="shadow", request_id=_request_of(colour)).output["top_k"]
        expected_agree += mine[0]["label"] == theirs[0]["label"]
        scores = {e["label"]: e["score"] for e in theirs}
        diffs.append(abs(mine[0]["score"] - scores.get(mine[0]["label"], 0.0)))
    assert shadow["agreeing"] == expected_agree < len(COLOURS)  # reversed classes mostly disagree
    assert shadow["agreement"] == round(expected_agree / 6, 6)
    assert shadow["mean_abs_score_diff"] == pytest.approx(sum(diffs) / 6, abs=1e-5)
    assert shadow["dropped"] == 0


def _request_of(colour: str) -> str:
    digest = Prediction.objects.filter(source="sync").order_by("id")[COLOURS.index(colour)]
    return digest.request_id


def test_the_shadow_guard_stops_the_shadow_and_flags_its_version(api, reversed_version):
    from apps.rollouts.guards import check_guards

    body = {"max_shadow_disagreement": 0.2, "shadow_min_pairs": 6}
    rollout_id = start_shadow(api, **body).json()["id"]
    for colour in COLOURS[:5]:
        api.post("/api/v1/models/tiny/predict", images_body(colour), format="json")
    assert check_guards() == []  # 5 pairs: fewer than shadow_min_pairs
    api.post("/api/v1/models/tiny/predict", images_body(COLOURS[5]), format="json")
    assert check_guards() == [rollout_id]
    detail = api.get(f"/api/v1/models/tiny/rollouts/{rollout_id}/").json()
    assert detail["status"] == "active" and detail["shadow_status"] == "stopped"
    assert detail["shadow_reason"].startswith("v2 flagged: top-1 disagreement")
    api.post("/api/v1/models/tiny/predict", BODY, format="json")
    assert Prediction.objects.filter(source="shadow").count() == 6  # no more shadowing
    assert check_guards() == []


def test_the_admin_shows_the_shadow_and_its_agreement(client, staff_user, api, reversed_version):
    from django.urls import reverse

    rollout_id = start_shadow(api).json()["id"]
    for colour in COLOURS[:2]:
        api.post("/api/v1/models/tiny/predict", images_body(colour), format="json")
    client.force_login(staff_user)
    page = client.get(reverse("admin:rollouts_rollout_change", args=[rollout_id])).content.decode()
    assert "shadow v2 vs primary: 2 pairs, top-1 agreement" in page
    assert "v2 shadow: 2 requests" in page and "v1 primary: 2 requests" in page
    changelist = client.get(
        reverse("admin:rollouts_rollout_changelist") + f"?model__id__exact={reversed_version.model_id}"
    )
    assert changelist.status_code == 200


def test_a_stored_batch_that_cannot_be_read_is_dropped_and_counted(api, candidate):
    from django.core.files.base import ContentFile

    rollout = Rollout.objects.get(pk=start_shadow(api).json()["id"])
    name = model_store.save("shadows/20261206000000-broken.bin", ContentFile(shadowing.MAGIC + b"\x00" * 3))
    message = {
        "rollout": rollout.pk,
        "version": candidate.pk,
        "input_name": name,
        "requests": [{"request_id": "r-3", "top_k": 3, "inputs": [{"kind": "image"}]}],
    }
    assert shadow_run(message) == 0
    rollout.refresh_from_db()
    assert rollout.shadow_dropped == 1 and not model_store.exists(name)


@pytest.mark.django_db(transaction=True)
def test_a_full_buffer_refuses_and_the_thread_counts_it(api, candidate, settings, monkeypatch):
    settings.SHADOW_BATCH_SECONDS, settings.SHADOW_BUFFER_MAX_REQUESTS = 60, 1
    monkeypatch.setattr(shadowing, "sender", shadowing.Sender())
    rollout = Rollout.objects.get(pk=start_shadow(api).json()["id"])
    for _ in range(3):
        assert api.post("/api/v1/models/tiny/predict", BODY, format="json").status_code == 200
    rollout.refresh_from_db()
    assert rollout.shadow_dropped == 0  # counted by the sender's thread, not by the request
    shadowing.sender.close()
    rollout.refresh_from_db()
    assert rollout.shadow_dropped == 2
    assert Prediction.objects.filter(source="shadow").count() == 1


def test_the_model_page_links_to_its_rollouts(client, staff_user, api, candidate):
    from django.urls import reverse

    rollout_id = start_shadow(api).json()["id"]
    client.force_login(staff_user)
    page = client.get(reverse("admin:registry_mlmodel_change", args=[candidate.model_id])).content.decode()
    assert f"active: #{rollout_id}" in page
    assert f"/rollouts/rollout/?model__id__exact={candidate.model_id}" in page
