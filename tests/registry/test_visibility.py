"""Who sees which model: `MLModel.objects.visible_to`, its one-model form `is_visible_to`,
and the answers the API gives with them (404 model_not_found, 403 model_not_granted)."""

import itertools

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.accounts.models import ApiKey
from apps.registry.models import MLModel, ModelGrant
from apps.registry.selectors import model_is_visible
from tests.factories import MLModelFactory, UserFactory
from tests.inference.conftest import encode, fresh_session_cache, ready_version  # noqa: F401  (a fixture)
from tests.onnx_models import tiny_classifier

pytestmark = pytest.mark.django_db

KINDS = ["staff", "owner", "maintainer", "consumer", "stranger"]
KEYS = ["no key", "unlimited key", "key for it", "key for another"]


def caller(kind: str, model: MLModel):
    """A user who is `kind` towards `model`."""
    if kind == "owner":
        return model.owner
    user = UserFactory(username=f"{kind}-{model.name}", is_staff=kind == "staff")
    if kind in ("maintainer", "consumer"):
        ModelGrant.objects.create(model=model, user=user, role=kind)
    return user


def key(kind: str, user, model: MLModel) -> ApiKey | None:
    names = {"no key": None, "unlimited key": [], "key for it": [model.name], "key for another": ["other"]}[
        kind
    ]
    return None if names is None else ApiKey(owner=user, model_names=names)


def expected(user_kind: str, visibility: str, key_kind: str) -> bool:
    """The rule as the README states it, written out independently of the code."""
    sees = user_kind != "stranger" or visibility == MLModel.Visibility.INTERNAL
    return sees and key_kind != "key for another"


@pytest.mark.parametrize(
    ("user_kind", "visibility", "key_kind"), list(itertools.product(KINDS, MLModel.Visibility.values, KEYS))
)
def test_the_list_and_the_one_model_check_give_the_documented_answer(user_kind, visibility, key_kind):
    model = MLModelFactory(name="m", visibility=visibility)
    MLModelFactory(name="other", visibility=MLModel.Visibility.PRIVATE)
    user = caller(user_kind, model)
    api_key = key(key_kind, user, model)
    want = expected(user_kind, visibility, key_kind)
    assert MLModel.objects.visible_to(user, api_key).filter(pk=model.pk).exists() is want
    assert model.is_visible_to(user, api_key) is want


@pytest.mark.parametrize("kind", ["staff", "owner"])
def test_the_one_model_check_asks_nothing_of_staff_the_owner_or_an_internal_model(
    kind, django_assert_num_queries
):
    private = MLModelFactory(name="p")
    internal = MLModelFactory(name="i", visibility=MLModel.Visibility.INTERNAL)
    stranger = UserFactory(username="stranger")
    user = caller(kind, private)
    with django_assert_num_queries(0):
        assert private.is_visible_to(user)
        assert model_is_visible(user=user, model=private)
        assert internal.is_visible_to(stranger)
        assert not private.is_visible_to(stranger, ApiKey(owner=stranger, model_names=["x"]))


def test_the_one_model_check_reads_the_grant_each_time(django_assert_num_queries):
    model = MLModelFactory(name="m")
    user = caller("consumer", model)
    with django_assert_num_queries(1):
        assert model.is_visible_to(user)
    ModelGrant.objects.filter(user=user).delete()
    assert not model.is_visible_to(user)


def test_a_model_granted_twice_over_is_listed_once(api, user):
    model = MLModelFactory(name="m", visibility=MLModel.Visibility.INTERNAL)
    ModelGrant.objects.create(model=model, user=user, role="consumer")
    assert [m.name for m in MLModel.objects.visible_to(user)] == ["m"]
    assert [m["name"] for m in api.get("/api/v1/models/").json()["results"]] == ["m"]


def test_a_staff_users_limited_key_sees_only_its_models_and_is_refused_others(key_client, user):
    staff = UserFactory(username="carol", is_staff=True)
    MLModelFactory(name="a", owner=user)
    MLModelFactory(name="b", owner=user)
    client = key_client(owner=staff, model_names=["a"])
    assert [m["name"] for m in client.get("/api/v1/models/").json()["results"]] == ["a"]
    response = client.get("/api/v1/models/b/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_granted"
    assert [m["name"] for m in key_client(owner=staff).get("/api/v1/models/").json()["results"]] == ["a", "b"]


def predict(client):
    image = SimpleUploadedFile("x.png", encode(Image.new("RGB", (8, 8), "red"), "PNG"))
    return client.post("/api/v1/models/cached-bobs/predict", {"image": [image]}, format="multipart")


def test_predicting_follows_the_rule_on_a_cached_model(key_client, user, other_user, settings):
    settings.LOCAL_CACHE_SECONDS = 60  # the model is found once, then kept in the process
    model = MLModelFactory(name="cached-bobs", owner=other_user)
    ready_version(model, tiny_classifier(), labels=["a", "b", "c"])
    client = key_client(scopes=["predict"])
    response = predict(client)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "model_not_found")
    grant = ModelGrant.objects.create(model=model, user=user, role="consumer")
    assert predict(client).status_code == 200
    grant.delete()  # the model stays cached in the process; the grant is read again
    response = predict(client)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "model_not_found")
    ModelGrant.objects.create(model=model, user=user, role="consumer")
    response = predict(key_client(scopes=["predict"], model_names=["other"]))
    assert (response.status_code, response.json()["error"]["code"]) == (403, "model_not_granted")
