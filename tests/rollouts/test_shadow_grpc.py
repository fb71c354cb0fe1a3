"""The gRPC door shadows through the same hand-off as the others (run_strict): a live gRPC
server in this process, NVIDIA's client, the shadow row linked to the v2-grpc row."""

import numpy as np
import pytest

from apps.inference.models import Prediction
from tests.oip.test_grpc_tritonclient import fp32_input, grpc_server, metadata, triton  # noqa: F401
from tests.rollouts.conftest import start_shadow

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_grpc_call_is_shadowed_and_linked(api, candidate, triton, metadata):  # noqa: F811
    assert start_shadow(api).status_code == 201
    array = np.linspace(-1, 1, 192, dtype=np.float32).reshape(1, 3, 8, 8)
    result = triton.infer("tiny", [fp32_input(array)], headers=metadata)
    assert result.get_response().model_version == "1"
    primary = Prediction.objects.get(source="v2-grpc")
    shadow = Prediction.objects.get(source="shadow")
    assert (primary.route, shadow.route) == ("primary", "shadow")
    assert (shadow.request_id, shadow.input_index, shadow.version_number) == (primary.request_id, 0, 2)
    assert primary.request_id and shadow.input_sha256 == primary.input_sha256
