"""Concurrent uploads to one model get distinct version numbers (real transactions)."""

import threading

import pytest
from django.core.files.base import ContentFile
from django.db import connection, connections

from apps.registry import services
from apps.registry.models import ModelVersion
from tests import onnx_models
from tests.factories import MLModelFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs a server database; CI runs it on PostgreSQL"
    ),
]


def upload_concurrently(model, user, contents: list[bytes]) -> list:
    barrier = threading.Barrier(len(contents))
    results: list = [None] * len(contents)

    def upload(index: int, content: bytes) -> None:
        try:
            barrier.wait()
            results[index] = services.model_version_create(
                model=model,
                file=ContentFile(content, name="m.onnx"),
                created_by=user,
                enqueue_validation=False,
            )
        except Exception as exc:  # collected and asserted on below
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upload, args=(i, c)) for i, c in enumerate(contents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_uploads_get_distinct_version_numbers(model_store_root):
    user = UserFactory()
    model = MLModelFactory(owner=user)
    results = upload_concurrently(model, user, [onnx_models.tiny_classifier(seed=i) for i in range(6)])
    assert all(isinstance(r, ModelVersion) for r in results), results
    assert sorted(r.number for r in results) == [1, 2, 3, 4, 5, 6]
    assert len(set(model_store_root.rglob("*.onnx"))) == 6


def test_the_same_file_uploaded_concurrently_is_stored_once(model_store_root):
    user = UserFactory()
    model = MLModelFactory(owner=user)
    results = upload_concurrently(model, user, [onnx_models.tiny_classifier()] * 4)
    created = [r for r in results if isinstance(r, ModelVersion)]
    refused = [r for r in results if not isinstance(r, ModelVersion)]
    assert len(created) == 1
    assert all(getattr(r, "code", None) == "duplicate_version" for r in refused), refused
    assert ModelVersion.objects.filter(model=model).count() == 1
    assert len(list(model_store_root.rglob("*.onnx"))) == 1
