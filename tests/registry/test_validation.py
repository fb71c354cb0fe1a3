"""The ONNX checks themselves, on files: no database involved."""

from pathlib import Path

import pytest

from apps.registry.validation import ModelFileError, inspect_model_file, validate_model_file
from tests import onnx_models

DEMO = Path(__file__).resolve().parents[2] / "demo" / "efficientnet_lite0"


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    return path


def test_the_demo_model_validates_with_its_real_signature_and_metrics():
    report = validate_model_file(
        DEMO / "model.onnx", latency_runs=20, throughput_runs=2, spatial_hint=224, label_count=1000
    )
    assert report.signature["inputs"] == [{"name": "input", "dtype": "float", "shape": [-1, 3, 224, 224]}]
    assert report.signature["outputs"] == [{"name": "logits", "dtype": "float", "shape": [-1, 1000]}]
    metrics = report.metrics
    assert metrics["opsets"]["ai.onnx"] >= 17
    assert metrics["size_bytes"] == (DEMO / "model.onnx").stat().st_size
    assert metrics["latency_ms"]["runs"] == 20
    assert metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p95"]
    assert metrics["throughput_per_s"]["batch"] == 8


def test_the_demo_labels_match_its_classes():
    labels = (DEMO / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000
    assert labels[967] == "espresso"


def test_a_static_batch_model_has_no_throughput_measurement(tmp_path):
    report = validate_model_file(write(tmp_path, onnx_models.tiny_classifier(batch=1)), latency_runs=20)
    assert report.signature["dynamic_batch"] is False
    assert "throughput_per_s" not in report.metrics


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (onnx_models.tiny_classifier()[:40], "not_onnx"),
        (b"\x00" * 1000, "not_onnx"),
        (onnx_models.zip_archive(), "not_onnx"),
        (onnx_models.with_external_data("/etc/passwd"), "external_data_not_allowed"),
        (onnx_models.with_external_data("../x"), "external_data_not_allowed"),
        (onnx_models.no_inputs(), "no_inputs"),
    ],
)
def test_inspection_refuses_unusable_files(tmp_path, content, code):
    with pytest.raises(ModelFileError) as error:
        inspect_model_file(write(tmp_path, content))
    assert error.value.code == code


def test_external_data_in_a_subgraph_constant_is_found_too(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    external = onnx.load_from_string(onnx_models.with_external_data("../secret")).graph.initializer[0]
    then_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=external)],
        "then",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["out"], then_branch=then_graph, else_branch=then_graph)],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=onnx_models.OPSET)
    with pytest.raises(ModelFileError) as error:
        inspect_model_file(write(tmp_path, model.SerializeToString()))
    assert error.value.code == "external_data_not_allowed"


def test_an_unsupported_operator_fails_when_onnx_runtime_loads_it(tmp_path):
    with pytest.raises(ModelFileError) as error:
        validate_model_file(write(tmp_path, onnx_models.unsupported_operator()), latency_runs=20)
    assert error.value.code in ("runtime_load_failed", "onnx_check_failed")
    assert "Frobnicate" in error.value.message


def test_a_label_count_that_does_not_match_fails(tmp_path):
    with pytest.raises(ModelFileError) as error:
        validate_model_file(write(tmp_path, onnx_models.tiny_classifier(classes=3)), label_count=5)
    assert error.value.code == "labels_mismatch"


def _any_size_image_model(tmp_path):
    """An image model whose height and width are left open: [N, 3, H, W] -> global max."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalMaxPool", ["input"], ["output"])],
        "any_size",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "any.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_a_test_input_past_the_limit_fails_validation_with_a_reason(tmp_path):
    """crop 8192 on an any-size model: 201 M values for one test input (804 MB as float32,
    and 12 GiB at batch 8 before), refused instead of taking the worker's memory."""
    with pytest.raises(ModelFileError) as error:
        validate_model_file(_any_size_image_model(tmp_path), latency_runs=1, spatial_hint=8192)
    assert error.value.code == "input_too_large"


def test_the_batch_run_is_skipped_when_only_batch_one_fits(tmp_path):
    report = validate_model_file(
        _any_size_image_model(tmp_path), latency_runs=1, throughput_runs=1, spatial_hint=3000
    )
    assert report.metrics["latency_ms"]["batch"] == 1
    assert "throughput_per_s" not in report.metrics
    report = validate_model_file(
        _any_size_image_model(tmp_path), latency_runs=1, throughput_runs=1, spatial_hint=64
    )
    assert report.metrics["throughput_per_s"]["batch"] == 8


def test_a_leftover_external_data_entry_on_inline_data_is_not_refused(tmp_path):
    """ONNX Runtime reads such a tensor from its inline data; only EXTERNAL data is refused."""
    import onnx

    model = onnx.load_from_string(onnx_models.tiny_classifier())
    entry = model.graph.initializer[0].external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    inspect_model_file(write(tmp_path, model.SerializeToString()))  # does not raise
