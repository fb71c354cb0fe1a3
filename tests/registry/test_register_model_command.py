from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.registry.models import MLModel, ModelAlias, ModelVersion
from tests import onnx_models

pytestmark = pytest.mark.django_db


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "file": tmp_path / "m.onnx",
        "labels": tmp_path / "labels.txt",
        "preprocessing": tmp_path / "p.json",
    }
    paths["file"].write_bytes(onnx_models.tiny_classifier())
    paths["labels"].write_text("a\nb\nc\n")
    paths["preprocessing"].write_text('{"resize": 8, "crop": 8}')
    return paths


def test_it_registers_validates_and_aliases_a_model(staff_user, files, capsys):
    call_command("register_model", name="cli", alias="production", **files)
    version = ModelVersion.objects.get(model__name="cli")
    assert version.status == "ready"
    assert version.labels == ["a", "b", "c"]
    assert ModelAlias.objects.get(model__name="cli", name="production").version == version
    assert MLModel.objects.get(name="cli").owner == staff_user
    assert "is ready" in capsys.readouterr().out


def test_a_file_that_fails_validation_is_a_command_error(staff_user, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(onnx_models.unsupported_operator())
    with pytest.raises(CommandError, match="failed validation"):
        call_command("register_model", name="bad", file=path, task="tensor")


def test_bytes_that_are_not_onnx_are_a_command_error(staff_user, tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"junk" * 100)
    with pytest.raises(CommandError, match="not_onnx"):
        call_command("register_model", name="junk", file=path)


def test_it_needs_an_owner(files):
    with pytest.raises(CommandError, match="owner"):
        call_command("register_model", name="cli", file=files["file"])


def test_bootstrap_demo_is_idempotent(db, capsys):
    call_command("bootstrap_demo")
    call_command("bootstrap_demo")
    version = ModelVersion.objects.get(model__name="efficientnet-lite0")
    assert version.status == "ready"
    assert version.aliases.get().name == "production"
    assert len(version.labels) == 1000
    assert "demo / demo-password" in capsys.readouterr().out
