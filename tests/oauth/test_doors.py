"""An OAuth access token on the Open Inference Protocol doors: /v2 over REST and gRPC (its
`authorization: Bearer` metadata), through the same `authenticate_headers` as /api/v1."""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from apps.inference.models import Prediction
from apps.oauth import services
from tests.oauth.conftest import bearer
from tests.oip.test_grpc_tritonclient import *  # noqa: F403  (the fixtures: grpc_server, triton)
from tests.oip.test_grpc_tritonclient import fp32_input

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_token_infers_over_grpc_and_the_row_records_the_application(machine_token, triton, tiny_version):
    token, application = machine_token()
    result = triton.infer(
        "tiny", [fp32_input(np.zeros((1, 3, 8, 8), np.float32))], headers={"authorization": f"Bearer {token}"}
    )
    assert result.as_numpy("logits").shape == (1, 3)
    row = Prediction.objects.get(source="v2-grpc")
    assert row.oauth_application_id == application.pk


def test_grpc_refuses_a_token_without_the_predict_scope(machine_token, triton, tiny_version):
    token, _ = machine_token(scope="models:read")
    with pytest.raises(grpcclient.InferenceServerException) as raised:
        triton.infer(
            "tiny",
            [fp32_input(np.zeros((1, 3, 8, 8), np.float32))],
            headers={"authorization": f"Bearer {token}"},
        )
    assert raised.value.status() == str(grpc.StatusCode.PERMISSION_DENIED)


def test_grpc_refuses_a_token_of_a_disabled_application(machine_token, triton, tiny_version):
    token, application = machine_token()
    services.application_update(application=application, disabled=True)
    with pytest.raises(grpcclient.InferenceServerException) as raised:
        triton.get_model_metadata("tiny", headers={"authorization": f"Bearer {token}"})
    assert raised.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)


def test_grpc_keeps_a_token_to_its_applications_models(machine_token, triton, tiny_version):
    token, _ = machine_token(model_names=["other"])
    with pytest.raises(grpcclient.InferenceServerException) as raised:
        triton.get_model_metadata("tiny", headers={"authorization": f"Bearer {token}"})
    assert raised.value.status() == str(grpc.StatusCode.PERMISSION_DENIED)


def test_a_token_infers_over_v2_rest(machine_token, tiny_version, live_server):
    token, application = machine_token()
    client = httpclient.InferenceServerClient(url=live_server.url.removeprefix("http://"))
    result = client.infer("tiny", [_http_input()], headers={"Authorization": f"Bearer {token}"})
    assert result.as_numpy("logits").shape == (1, 3)
    assert Prediction.objects.get(source="v2-rest").oauth_application_id == application.pk


def test_v2_rest_answers_a_bad_token_in_the_protocols_error_shape(db, tiny_version):
    response = bearer("mlpat_" + "C" * 43).get("/v2/models/tiny")
    assert response.status_code == 401
    assert response.json() == {"error": "Unknown or revoked OAuth access token."}


def _http_input() -> httpclient.InferInput:
    tensor = httpclient.InferInput("input", [1, 3, 8, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
    return tensor


def test_the_grpc_log_line_names_the_application(machine_token, triton, tiny_version, log_records):
    token, application = machine_token()
    triton.get_model_metadata("tiny", headers={"authorization": f"Bearer {token}"})
    line = next(r for r in log_records if r.name == "mlplatform.grpc")
    assert line.oauth_application == application.client_id
