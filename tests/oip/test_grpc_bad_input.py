"""Bad input and refused calls on the gRPC door: the protocol's status code with a clear
message (the platform's error code in the `error-code` trailing metadata), a failed audit row
once a version is known, never INTERNAL and never a server that stops answering."""

import struct

import grpc
import numpy as np
import pytest
from rest_framework_simplejwt.tokens import AccessToken
from tritonclient.grpc import service_pb2 as pb

from apps.accounts.models import QuotaUsage, UserLimits
from apps.accounts.services.api_keys import api_key_revoke
from apps.inference.models import Prediction
from apps.oip.grpc import server
from tests.factories import UserFactory
from tests.oip.test_grpc_tritonclient import *  # noqa: F403  (the fixtures: grpc_server, stub, metadata)

pytestmark = pytest.mark.django_db(transaction=True)

StatusCode = grpc.StatusCode


def tiny_request(array: np.ndarray | None = None, *, datatype: str = "FP32", raw: bytes | None = None):
    array = np.zeros((1, 3, 8, 8), np.float32) if array is None else array
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input", datatype=datatype, shape=list(array.shape))
    request.raw_input_contents.append(array.tobytes() if raw is None else raw)
    return request


def refused(method, request, metadata: dict[str, str] | None, code: StatusCode, fragment: str = ""):
    """The error of a call that must fail with `code`; its message names `fragment`."""
    with pytest.raises(grpc.RpcError) as raised:
        method(request, metadata=list((metadata or {}).items()))
    error = raised.value
    assert error.code() == code, error.details()
    assert fragment.lower() in error.details().lower()
    return error


def trailing(error: grpc.RpcError) -> dict[str, str]:
    return dict(error.trailing_metadata())


def failed_rows() -> list[str]:
    rows = Prediction.objects.filter(source="v2-grpc", status="failed")
    return list(rows.values_list("error_code", flat=True))


def test_a_datatype_the_model_does_not_take_is_invalid_argument_and_recorded(stub, metadata, tiny_version):
    request = tiny_request(np.zeros((1, 3, 8, 8), np.float64), datatype="FP64")
    error = refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "the model takes FP32")
    assert trailing(error)["error-code"] == "invalid_inference_request"
    assert failed_rows() == ["invalid_inference_request"]


def test_a_shape_the_model_does_not_take_is_invalid_argument(stub, metadata, tiny_version):
    request = tiny_request(np.zeros((1, 3, 4, 4), np.float32))
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "shape")
    assert failed_rows() == ["invalid_tensor"]


def test_raw_input_contents_with_the_wrong_byte_count_is_invalid_argument(stub, metadata, tiny_version):
    request = tiny_request(raw=bytes(700))
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "768 expected")
    assert failed_rows() == ["invalid_inference_request"]


def test_raw_input_contents_for_some_inputs_only_is_invalid_argument(stub, metadata, tensor_version):
    request = pb.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.inputs.add(name="n", datatype="INT64", shape=[1])
    request.raw_input_contents.append(np.zeros(4, np.float32).tobytes())
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "every input")
    assert failed_rows() == ["invalid_inference_request"]


def test_typed_contents_in_the_field_of_another_datatype_are_invalid_argument(stub, metadata, tiny_version):
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 8, 8]).contents.int64_contents.extend(
        [0] * 192
    )
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "fp32_contents")
    assert failed_rows() == ["invalid_inference_request"]


def test_a_typed_value_out_of_its_datatypes_range_is_invalid_argument(stub, metadata, tiny_version):
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input", datatype="INT8", shape=[1, 3, 8, 8]).contents.int_contents.extend(
        [300] * 192
    )
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "out of the range of INT8")


def test_a_bytes_element_with_a_bad_length_prefix_is_invalid_argument(stub, metadata, tiny_version):
    raw = struct.pack("<I", 1000) + b"\xff\xd8 not a thousand bytes"
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(raw)
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "claims 1000 bytes")
    assert failed_rows() == ["invalid_inference_request"]


def test_an_unknown_requested_output_is_invalid_argument(stub, metadata, tiny_version):
    request = tiny_request()
    request.outputs.add(name="probabilities")
    refused(stub.ModelInfer, request, metadata, StatusCode.INVALID_ARGUMENT, "unknown output 'probabilities'")
    assert failed_rows() == ["invalid_inference_request"]


def test_an_unknown_datatype_is_invalid_argument(stub, metadata, tiny_version):
    refused(stub.ModelInfer, tiny_request(datatype="FP128"), metadata, StatusCode.INVALID_ARGUMENT, "FP128")


def test_a_message_over_the_limit_is_resource_exhausted_and_the_server_goes_on(metadata, tiny_version):
    running = server.start(address="127.0.0.1", port=0, max_workers=2, max_message_bytes=64 * 1024)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            from tritonclient.grpc import service_pb2_grpc

            small = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            big = tiny_request(np.zeros((100, 3, 8, 8), np.float32))  # 76,800 bytes of data
            refused(small.ModelInfer, big, metadata, StatusCode.RESOURCE_EXHAUSTED, "larger than max")
            assert small.ModelInfer(tiny_request(), metadata=list(metadata.items())).outputs
    finally:
        running.stop(grace=None)
    assert not failed_rows()


def test_no_credentials_is_unauthenticated(stub, tiny_version):
    error = refused(stub.ModelInfer, tiny_request(), None, StatusCode.UNAUTHENTICATED, "x-api-key")
    assert trailing(error)["error-code"] == "not_authenticated"
    refused(stub.ModelMetadata, pb.ModelMetadataRequest(name="tiny"), None, StatusCode.UNAUTHENTICATED)
    assert not Prediction.objects.exists()


def test_a_revoked_key_is_unauthenticated(stub, key_client, tiny_version):
    client = key_client()
    metadata = {"authorization": f"Api-Key {client.key}"}
    assert stub.ModelInfer(tiny_request(), metadata=list(metadata.items())).outputs
    api_key_revoke(api_key=client.api_key)
    error = refused(stub.ModelInfer, tiny_request(), metadata, StatusCode.UNAUTHENTICATED, "revoked")
    assert trailing(error)["error-code"] == "api_key_revoked"


def test_a_bad_token_is_unauthenticated_and_a_good_one_is_served(stub, user, tiny_version):
    refused(
        stub.ModelInfer, tiny_request(), {"authorization": "Bearer not.a.token"}, StatusCode.UNAUTHENTICATED
    )
    good = {"authorization": f"Bearer {AccessToken.for_user(user)}"}
    assert stub.ModelInfer(tiny_request(), metadata=list(good.items())).outputs
    assert Prediction.objects.get(source="v2-grpc").api_key is None


def test_repeated_failed_authentication_is_resource_exhausted(stub, settings, tiny_version):
    settings.AUTH_FAILURE_RATE = "2/min"
    bad = {"x-api-key": "mlp_abcdefgh_" + "x" * 43}
    for _ in range(2):
        refused(stub.ModelInfer, tiny_request(), bad, StatusCode.UNAUTHENTICATED)
    error = refused(
        stub.ModelInfer, tiny_request(), bad, StatusCode.RESOURCE_EXHAUSTED, "failed authentication"
    )
    assert int(trailing(error)["retry-after"]) > 0


def test_a_key_without_the_predict_scope_is_permission_denied(stub, key_client, tiny_version):
    metadata = {"x-api-key": key_client(scopes=["models:read"]).key}
    error = refused(
        stub.ModelInfer, tiny_request(), metadata, StatusCode.PERMISSION_DENIED, "'predict' scope"
    )
    assert trailing(error)["error-code"] == "scope_missing"
    refused(stub.ModelReady, pb.ModelReadyRequest(name="tiny"), metadata, StatusCode.PERMISSION_DENIED)


def test_a_key_limited_to_other_models_is_permission_denied(stub, key_client, tiny_version):
    metadata = {"x-api-key": key_client(model_names=["other"]).key}
    refused(stub.ModelInfer, tiny_request(), metadata, StatusCode.PERMISSION_DENIED)
    refused(stub.ModelMetadata, pb.ModelMetadataRequest(name="tiny"), metadata, StatusCode.PERMISSION_DENIED)
    assert not Prediction.objects.exists()


def test_another_users_private_model_is_not_found_as_if_it_did_not_exist(stub, key_client, tiny_version):
    mallory = UserFactory(username="mallory")
    metadata = {"x-api-key": key_client(owner=mallory).key}
    hidden = refused(stub.ModelInfer, tiny_request(), metadata, StatusCode.NOT_FOUND)
    unknown_request = tiny_request()
    unknown_request.model_name = "no-such-model"
    unknown = refused(stub.ModelInfer, unknown_request, metadata, StatusCode.NOT_FOUND)
    assert hidden.details().replace("tiny", "X") == unknown.details().replace("no-such-model", "X")
    assert trailing(hidden)["error-code"] == trailing(unknown)["error-code"]
    for method, request in (
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="tiny")),
        (stub.ModelReady, pb.ModelReadyRequest(name="tiny")),
    ):
        refused(method, request, metadata, StatusCode.NOT_FOUND)
    assert not Prediction.objects.exists()


def test_an_unknown_version_or_a_bad_version_slot_is_an_error(stub, metadata, tiny_version):
    for version, code, fragment in (
        ("7", StatusCode.NOT_FOUND, "no version 7"),
        ("staging", StatusCode.NOT_FOUND, "no alias 'staging'"),
        ("a.b", StatusCode.INVALID_ARGUMENT, "number or an alias"),
    ):
        refused(
            stub.ModelMetadata,
            pb.ModelMetadataRequest(name="tiny", version=version),
            metadata,
            code,
            fragment,
        )


def test_a_version_that_is_not_ready_is_failed_precondition(stub, metadata, tiny_version):
    tiny_version.status = "archived"
    tiny_version.save()
    ready = stub.ModelReady(pb.ModelReadyRequest(name="tiny", version="1"), metadata=list(metadata.items()))
    assert ready.ready is False
    request = tiny_request()
    request.model_version = "1"
    refused(stub.ModelInfer, request, metadata, StatusCode.FAILED_PRECONDITION, "ready")
    assert failed_rows() == ["version_not_ready"]


def test_throttled_inference_is_resource_exhausted_with_retry_after(stub, metadata, tiny_version, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "2/min"}
    for used in (1, 2):
        _, call = stub.ModelInfer.with_call(tiny_request(), metadata=list(metadata.items()))
        sent = dict(call.trailing_metadata())
        assert sent["x-ratelimit-limit"] == "2"
        # The IETF draft's fields, as the REST doors send them (apps/accounts/ratelimit_headers.py)
        assert sent["ratelimit-policy"] == '"predict";q=2;w=60'
        assert sent["ratelimit"].startswith(f'"predict";r={2 - used};t=')
    error = refused(stub.ModelInfer, tiny_request(), metadata, StatusCode.RESOURCE_EXHAUSTED, "throttled")
    assert trailing(error)["error-code"] == "throttled"
    assert trailing(error)["x-ratelimit-remaining"] == "0"
    assert trailing(error)["ratelimit"] == '"predict";r=0;t=30'
    assert int(trailing(error)["retry-after"]) == 30  # the rate clock is pinned mid-window
    assert Prediction.objects.filter(source="v2-grpc").count() == 2  # a throttled call is not recorded


def test_a_spent_quota_is_resource_exhausted_with_retry_after_and_recorded(
    stub, metadata, tiny_version, user
):
    UserLimits.objects.create(user=user, monthly_prediction_quota=1)
    assert stub.ModelInfer(tiny_request(), metadata=list(metadata.items())).outputs
    error = refused(stub.ModelInfer, tiny_request(), metadata, StatusCode.RESOURCE_EXHAUSTED, "quota")
    assert trailing(error)["error-code"] == "quota_exceeded"
    assert int(trailing(error)["retry-after"]) > 0
    assert QuotaUsage.objects.get(user=user).used == 1
    assert failed_rows() == ["quota_exceeded"]


def test_the_request_id_is_echoed_or_made(stub, metadata, tiny_version):
    _, call = stub.ModelInfer.with_call(
        tiny_request(), metadata=[*metadata.items(), ("x-request-id", "abc-123")]
    )
    assert dict(call.initial_metadata())["x-request-id"] == "abc-123"
    _, call = stub.ModelInfer.with_call(
        tiny_request(), metadata=[*metadata.items(), ("x-request-id", "bad id!")]
    )
    made = dict(call.initial_metadata())["x-request-id"]
    assert made != "bad id!" and len(made) == 32
    rows = Prediction.objects.filter(source="v2-grpc").order_by("created_at")
    assert [row.request_id for row in rows] == ["abc-123", made]
    error = refused(stub.ModelInfer, tiny_request(datatype="FP128"), metadata, StatusCode.INVALID_ARGUMENT)
    assert dict(error.initial_metadata())["x-request-id"]
