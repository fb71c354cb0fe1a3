"""Small ONNX models built in code, for tests that need real but fast models."""

import io
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _serialize(graph: onnx.GraphProto, opsets: list | None = None) -> bytes:
    model = helper.make_model(graph, opset_imports=opsets or OPSET, producer_name="mlplatform-tests")
    model.ir_version = 8
    return model.SerializeToString()


def tiny_classifier(classes: int = 3, seed: int = 0, batch: str | int = "N") -> bytes:
    """[N,3,8,8] image → global average pool → linear → [N, classes] logits."""
    weights = np.random.default_rng(seed).standard_normal((3, classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    return _serialize(graph)


def with_external_data(location: str) -> bytes:
    """A classifier whose weights point at an external file (refused: one self-contained file)."""
    model = onnx.load_from_string(tiny_classifier())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "36")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _external_tensor(name: str, location: str, length: int = 16) -> onnx.TensorProto:
    tensor = onnx.TensorProto(name=name, data_type=TensorProto.UINT8, dims=[length])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def external_data_in_function(location: str, n: int = 16) -> bytes:
    """External data in a Constant inside a model-local function, not in the main graph."""
    const = helper.make_node("Constant", [], ["c"], value=_external_tensor("c", location, n))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    function = helper.make_function(
        "local", "Leak", ["x"], ["y"], [const, add], [helper.make_opsetid("", 17)]
    )
    graph = helper.make_graph(
        [helper.make_node("Leak", ["input"], ["out"], domain="local")],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.UINT8, [n])],
        [helper.make_tensor_value_info("out", TensorProto.UINT8, [n])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=[function])
    model.ir_version = 8
    return model.SerializeToString()


def external_data_in_sparse_constant(location: str, n: int = 16) -> bytes:
    """External values in a Constant node's `sparse_value` attribute."""
    indices = helper.make_tensor("i", TensorProto.INT64, [n], list(range(n)))
    sparse = helper.make_sparse_tensor(_external_tensor("v", location, n), indices, [n])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], sparse_value=sparse),
            helper.make_node("Add", ["input", "c"], ["out"]),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.UINT8, [n])],
        [helper.make_tensor_value_info("out", TensorProto.UINT8, [n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def unsupported_operator() -> bytes:
    """A well-formed model using an operator no ONNX Runtime provider implements."""
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["input"], ["output"], domain="com.example.nonexistent")],
        "unsupported",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
    )
    return _serialize(graph, [*OPSET, helper.make_opsetid("com.example.nonexistent", 1)])


def no_inputs() -> bytes:
    """A model whose graph only emits a constant: nothing to predict from."""
    constant = numpy_helper.from_array(np.ones((1, 2), dtype=np.float32), "value")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["output"], value=constant)],
        "no_inputs",
        [],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2])],
    )
    return _serialize(graph)


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.onnx", tiny_classifier())
    return buffer.getvalue()


def constant_classifier(logits: list[float]) -> bytes:
    """[N,3,8,8] image → these logits for every image (0 x the pooled input + a constant):
    a classifier whose outputs may be NaN or ±Inf."""
    zeros = numpy_helper.from_array(np.zeros((3, len(logits)), dtype=np.float32), "zeros")
    constant = numpy_helper.from_array(np.array([logits], dtype=np.float32), "constant")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "zeros"], ["nothing"]),
            helper.make_node("Add", ["nothing", "constant"], ["logits"]),
        ],
        "constant_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(logits)])],
        initializer=[zeros, constant],
    )
    return _serialize(graph)


def tensor_doubler(dims: int = 4) -> bytes:
    """x: float [N, dims] → y = 2x, plus n: int64 [N] → count = n + 1. A two-input tensor model."""
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    one = numpy_helper.from_array(np.array(1, dtype=np.int64), "one")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("Add", ["n", "one"], ["count"])],
        "doubler",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dims]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dims]),
            helper.make_tensor_value_info("count", TensorProto.INT64, ["N"]),
        ],
        initializer=[two, one],
    )
    return _serialize(graph)


def label_then_scores_classifier(logits: list[float]) -> bytes:
    """As constant_classifier, but laid out as a converted scikit-learn classifier: its
    predicted `label` ([N], int64) comes before its `probabilities` ([N, classes])."""
    zeros = numpy_helper.from_array(np.zeros((3, len(logits)), dtype=np.float32), "zeros")
    constant = numpy_helper.from_array(np.array([logits], dtype=np.float32), "constant")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "zeros"], ["nothing"]),
            helper.make_node("Add", ["nothing", "constant"], ["probabilities"]),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "label_then_scores_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(logits)]),
        ],
        initializer=[zeros, constant],
    )
    return _serialize(graph)
