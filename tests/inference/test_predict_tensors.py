import base64

import numpy as np
import pytest

from apps.inference.models import Prediction

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/doubler/predict"


def predict(client, inputs):
    return client.post(URL, {"inputs": inputs}, format="json")


def test_nested_lists_in_named_outputs_out(api, tensor_version):
    response = predict(api, {"x": [[1, 2, 3, 4]], "n": [41]})
    assert response.status_code == 200, response.content
    outputs = response.json()["predictions"][0]["outputs"]
    assert outputs["y"] == {"shape": [1, 4], "dtype": "float32", "data": [[2.0, 4.0, 6.0, 8.0]]}
    assert outputs["count"] == {"shape": [1], "dtype": "int64", "data": [42]}
    row = Prediction.objects.get()
    assert row.input_meta["tensors"] == {
        "x": {"shape": [1, 4], "dtype": "float32"},
        "n": {"shape": [1], "dtype": "int64"},
    }
    assert row.output["outputs"]["y"]["max"] == 8.0


def test_flat_data_with_a_shape(api, tensor_version):
    response = predict(api, {"x": {"data": [1, 2, 3, 4, 5, 6, 7, 8], "shape": [2, 4]}, "n": [1, 2]})
    assert response.json()["predictions"][0]["outputs"]["y"]["shape"] == [2, 4]


def test_base64_little_endian_bytes(api, tensor_version):
    x = np.arange(8, dtype="<f4").reshape(2, 4)
    n = np.array([5, 6], dtype="<i8")
    inputs = {
        "x": {"b64": base64.b64encode(x.tobytes()).decode(), "dtype": "float32", "shape": [2, 4]},
        "n": {"b64": base64.b64encode(n.tobytes()).decode(), "dtype": "int64", "shape": [2]},
    }
    outputs = predict(api, inputs).json()["predictions"][0]["outputs"]
    assert outputs["y"]["data"] == (x * 2).tolist()
    assert outputs["count"]["data"] == [6, 7]


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        pytest.param({"z": [[1, 2, 3, 4]], "n": [1]}, "unknown", id="wrong-name"),
        pytest.param({"x": [[1, 2, 3, 4]]}, "missing", id="missing-name"),
        pytest.param({"x": [[1, 2, 3]], "n": [1]}, "expects shape [-1, 4]", id="wrong-shape"),
        pytest.param({"x": [1, 2, 3, 4], "n": [1]}, "got [4]", id="wrong-rank"),
        pytest.param({"x": [[1, 2, 3, 4]], "n": [1.5]}, "expects int64", id="wrong-dtype"),
        pytest.param({"x": [["a", "b", "c", "d"]], "n": [1]}, "numbers", id="strings"),
        pytest.param({"x": [[1, 2], [3]], "n": [1]}, "not a valid tensor", id="ragged"),
        pytest.param(
            {"x": {"b64": "!!", "dtype": "float32", "shape": [1, 4]}, "n": [1]}, "valid", id="bad-b64"
        ),
        pytest.param({"x": {"data": [1, 2, 3], "shape": [1, 4]}, "n": [1]}, "valid tensor", id="bad-reshape"),
    ],
)
def test_a_wrong_tensor_is_422_naming_what_was_expected(api, tensor_version, inputs, fragment):
    response = predict(api, inputs)
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_tensor"
    assert fragment in error["message"]
    assert Prediction.objects.get().error_code == "invalid_tensor"


def test_shape_errors_carry_expected_and_got(api, tensor_version):
    details = predict(api, {"x": [[1, 2, 3]], "n": [1]}).json()["error"]["details"]
    assert (details["expected_shape"], details["got_shape"]) == ([-1, 4], [1, 3])


def test_nan_and_inf_are_refused_by_default(api, tensor_version):
    response = api.post(
        URL, b'{"inputs": {"x": [[NaN, 1, 2, Infinity]], "n": [1]}}', content_type="application/json"
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "non_finite_input"


def test_nan_passes_when_the_version_allows_it(api, tensor_version):
    tensor_version.preprocessing = {"non_finite": "allow"}
    tensor_version.save()
    response = api.post(
        URL, b'{"inputs": {"x": [[NaN, 1, 2, Infinity]], "n": [1]}}', content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["outputs"]["y"]["data"] == [[None, 2.0, 4.0, "Infinity"]]


def test_inputs_must_be_an_object(api, tensor_version):
    for inputs, status, code in (([1, 2], 400, "invalid_input"), ({}, 422, "invalid_tensor")):
        response = predict(api, inputs)
        assert response.status_code == status, response.content
        assert response.json()["error"]["code"] == code
    assert list(Prediction.objects.values_list("status", flat=True)) == ["failed", "failed"]


@pytest.mark.parametrize(
    "n, x",
    [
        ([2**63], [[1, 2, 3, 4]]),  # past int64: would wrap to the most negative int64
        ([1e19], [[1, 2, 3, 4]]),  # a whole float, but no int64 holds it
        ([2.0**63], [[1, 2, 3, 4]]),  # a float just past int64 (float(int64 max) rounds up to it)
        ([1], [[1e300, 0, 0, 0]]),  # no float32 holds it: it would become Inf
    ],
)
def test_values_the_input_type_cannot_hold_are_422(api, tensor_version, n, x):
    response = predict(api, {"x": x, "n": n})
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_tensor"
    assert error["details"]["expected_dtype"] in ("int64", "float32")
    assert Prediction.objects.get().error_code == "invalid_tensor"


def test_images_sent_to_a_two_input_model_are_422(api, tensor_version):
    response = api.post(URL, {"image": base64.b64encode(b"x").decode()}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "images_not_supported"


def test_tensors_the_model_cannot_compute_on_are_422(api, user):
    """Shapes that each match the signature but do not broadcast together: ONNX Runtime fails."""
    from onnx import TensorProto, helper

    from tests.factories import MLModelFactory
    from tests.inference.conftest import ready_version

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "adder",
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [dim, 4])
            for name, dim in (("a", "M"), ("b", "N"))
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["P", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ready_version(
        MLModelFactory(name="adder", owner=user, task="tensor"), model.SerializeToString(), preprocessing={}
    )
    inputs = {"a": [[1, 2, 3, 4]] * 2, "b": [[1, 2, 3, 4]] * 3}
    response = api.post("/api/v1/models/adder/predict", {"inputs": inputs}, format="json")
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "inference_failed"


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param({"x": [[1, 2, 3, 4]], "n": [1.0, 2**60 + 1]}, id="float-past-2**53-into-int64"),
        pytest.param({"x": [[True, False, True, False]], "n": [1]}, id="booleans-into-float32"),
        pytest.param({"x": [[1, 2, 3, 4]], "n": [True]}, id="boolean-into-int64"),
        pytest.param({"x": {"data": [1, 2, 3, 4], "shape": [-3, 4]}, "n": [1]}, id="negative-shape"),
        pytest.param({"x": {"data": [1, 2, 3, 4], "shape": [1, 4.0]}, "n": [1]}, id="float-in-shape"),
        pytest.param({"x": {"data": [1, 2, 3, 4], "shape": "1,4"}, "n": [1]}, id="shape-not-a-list"),
        pytest.param(
            {"x": {"b64": base64.b64encode(bytes(16)).decode(), "shape": [-1, 4]}, "n": [1]},
            id="negative-b64-shape",
        ),
    ],
)
def test_tensors_that_would_be_changed_or_guessed_are_422(api, tensor_version, inputs):
    response = predict(api, inputs)
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "invalid_tensor"
    assert Prediction.objects.get().error_code == "invalid_tensor"


def test_exact_large_integers_pass_unchanged(api, tensor_version):
    response = predict(api, {"x": [[1, 2, 3, 4]], "n": [2**60 + 1]})
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["outputs"]["count"]["data"] == [2**60 + 2]


def test_outputs_near_the_float32_limit_are_answered_and_recorded(api, tensor_version):
    """The audit summary's mean of 1.5e38 * 2 values would overflow in float32."""
    response = predict(api, {"x": [[1.5e38, 1.5e38, 1.5e38, 1.5e38]], "n": [1]})
    assert response.status_code == 200, response.content
    row = Prediction.objects.get()
    assert row.status == "succeeded"
    summary = row.output["outputs"]["y"]
    assert summary["max"] == pytest.approx(3e38, rel=1e-6)
    assert summary["mean"] == pytest.approx(3e38, rel=1e-6)
