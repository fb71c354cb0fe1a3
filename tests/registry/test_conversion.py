"""Converting PyTorch and scikit-learn models to ONNX (apps.registry.conversion) and `manage.py convert`.

torch, onnxscript and skl2onnx are optional extras (requirements-extras.txt). Locally a test
that needs one is skipped when it is missing; in CI (CI is set) it must run, so a missing
extra fails it instead.
"""

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from django.core.management import CommandError, call_command

from apps.registry.conversion.checking import ConversionError
from apps.registry.conversion.pytorch import export_torch
from apps.registry.conversion.scikit_learn import export_sklearn
from apps.registry.models import ModelAlias, ModelVersion


def require(name: str) -> ModuleType:
    """Import an optional extra: skip the test without it, except in CI, where it must be there."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture
def torch() -> ModuleType:
    require("onnxscript")
    return require("torch")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    require("skl2onnx")
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture(scope="module")
def digits_classifier(digits):
    """Scaled logistic regression fitted on the first 1000 digits (scaling makes it converge fast)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = digits
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[:1000], y[:1000])


def make_mlp():
    """A --factory for `convert torch`: (module, example_inputs)."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return module, (torch.randn(2, 4),)


def run_onnx(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def test_a_small_torch_model_exports_and_matches_the_module(torch, tmp_path):
    module, example = make_mlp()
    report = export_torch(module, example, tmp_path / "mlp.onnx")
    assert report.max_abs_diff < 1e-5
    assert report.samples_checked == 2 + 3 * 2 + 4  # examples, three random batches, one at batch 4
    assert report.opset == 18
    assert [(t.name, t.shape[1:]) for t in report.inputs] == [("input", (4,))]
    assert [(t.name, t.shape[1:]) for t in report.outputs] == [("output", (3,))]
    assert report.size_bytes == (tmp_path / "mlp.onnx").stat().st_size


def test_the_exported_torch_model_takes_any_batch_size(torch, tmp_path):
    module, example = make_mlp()
    report = export_torch(module, example, tmp_path / "mlp.onnx")
    assert isinstance(report.inputs[0].shape[0], str)  # a dynamic dimension
    batch = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    (output,) = run_onnx(report.path, {"input": batch})
    with torch.no_grad():
        expected = module(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_the_same_module_converts_to_the_same_bytes(torch, tmp_path):
    module, example = make_mlp()
    first = export_torch(module, example, tmp_path / "a.onnx")
    second = export_torch(module, example, tmp_path / "b.onnx")
    assert first.sha256 == second.sha256  # no stack traces or local paths in the file


def test_a_module_onnx_cannot_reproduce_is_a_conversion_mismatch(torch, tmp_path):
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x)  # ONNX draws other random numbers

    with pytest.raises(ConversionError) as caught:
        export_torch(Noisy(), (torch.randn(2, 4),), tmp_path / "noisy.onnx")
    assert caught.value.code == "conversion_mismatch"
    assert caught.value.status_code == 422
    assert caught.value.details["max_abs_diff"] > 1e-4


def test_example_inputs_and_input_names_must_agree(torch, tmp_path):
    module, example = make_mlp()
    with pytest.raises(ConversionError) as caught:
        export_torch(module, example, tmp_path / "m.onnx", input_names=("a", "b"))
    assert caught.value.code == "invalid_input"


def test_a_logistic_regression_on_digits_keeps_its_labels(digits, digits_classifier, tmp_path):
    X, _ = digits
    classifier = digits_classifier
    report = export_sklearn(classifier, X[1000:], tmp_path / "digits.onnx")
    assert [t.name for t in report.outputs] == ["label", "probabilities"]  # no ZipMap
    assert report.samples_checked == len(X) - 1000
    assert report.max_abs_diff < 1e-4
    labels, probabilities = run_onnx(report.path, {"input": X[1000:].astype(np.float32)})
    np.testing.assert_array_equal(labels, classifier.predict(X[1000:].astype(np.float32)))
    assert probabilities.shape == (len(X) - 1000, 10)


def test_different_labels_are_a_conversion_mismatch(digits, digits_classifier, tmp_path, monkeypatch):
    X, _ = digits
    # The "original" now answers 0 for everything, so the faithful ONNX model disagrees with it.
    monkeypatch.setattr(type(digits_classifier), "predict", lambda self, X: np.zeros(len(X), dtype=int))
    with pytest.raises(ConversionError) as caught:
        export_sklearn(digits_classifier, X[:50], tmp_path / "digits.onnx")
    assert caught.value.code == "conversion_mismatch"
    assert caught.value.details["mismatched_labels"] > 0


@pytest.mark.parametrize("missing", ["torch", "onnxscript"])
def test_it_names_the_extras_when_the_torch_exporter_is_missing(monkeypatch, tmp_path, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(ConversionError) as caught:
        export_torch(object(), (), tmp_path / "m.onnx")
    assert caught.value.code == "converter_missing"
    assert "requirements-extras.txt" in caught.value.message


def test_it_names_the_extras_when_skl2onnx_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ConversionError) as caught:
        export_sklearn(object(), np.zeros((1, 2)), tmp_path / "m.onnx")
    assert caught.value.code == "converter_missing"
    assert "requirements-extras.txt" in caught.value.message


# --- manage.py convert ------------------------------------------------------------------------


@pytest.fixture
def digits_pickle(digits_classifier, tmp_path) -> Path:
    import joblib

    path = tmp_path / "digits.joblib"
    joblib.dump(digits_classifier, path)
    return path


@pytest.mark.django_db
def test_convert_sklearn_registers_a_ready_tensor_version(staff_user, digits_pickle, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{digit}\n" for digit in range(10)))
    out = tmp_path / "digits.onnx"
    call_command(
        "convert",
        "sklearn",
        pickle=digits_pickle,
        features=64,
        out=out,
        register=True,
        name="digits",
        labels=labels,
        alias="production",
    )
    version = ModelVersion.objects.get(model__name="digits")
    assert version.status == ModelVersion.Status.READY
    assert version.model.task == "tensor"
    assert version.labels == [str(digit) for digit in range(10)]
    assert [i["name"] for i in version.signature["inputs"]] == ["input"]
    assert [o["name"] for o in version.signature["outputs"]] == ["label", "probabilities"]
    assert ModelAlias.objects.get(model__name="digits", name="production").version == version
    printed = capsys.readouterr().out
    assert f"Wrote {out}" in printed
    assert "digits v1 is ready" in printed


def test_convert_torch_writes_a_checked_file_from_a_factory(torch, tmp_path, capsys):
    out = tmp_path / "mlp.onnx"
    call_command("convert", "torch", factory="tests.registry.test_conversion:make_mlp", out=out)
    assert out.is_file()
    assert "max abs diff" in capsys.readouterr().out


def test_convert_needs_register_for_the_registry_options(tmp_path):
    with pytest.raises(CommandError, match="only apply with --register"):
        call_command("convert", "sklearn", pickle=tmp_path / "x", features=3, out=tmp_path / "o", alias="a")


def test_a_mismatch_is_a_command_error(torch, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise ConversionError("output 0 differs")

    monkeypatch.setattr("apps.registry.conversion.pytorch.export_torch", fail)  # where convert looks it up
    with pytest.raises(CommandError, match="conversion_mismatch: output 0 differs"):
        call_command(
            "convert", "torch", factory="tests.registry.test_conversion:make_mlp", out=tmp_path / "m.onnx"
        )
