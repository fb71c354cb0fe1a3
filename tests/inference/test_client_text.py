"""Client text that reaches the audit row or an error body: NUL, lone surrogates, bad bytes.

PostgreSQL refuses NUL in text and jsonb, and no encoder writes a lone surrogate as UTF-8;
none of these may turn a request into a 500 or lose its audit row. The tests run without a
surrounding transaction, as requests do in production.
"""

import json

import pytest
from PIL import Image

from apps.core.renderers import JSONRenderer
from apps.core.text import client_text
from apps.inference.models import Prediction
from apps.jobs.models import JobItem
from tests.core.test_errors import assert_error_shape
from tests.inference.conftest import encode
from tests.jobs.conftest import enqueued  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def multipart_with_part_type(content_type: bytes) -> tuple[bytes, str]:
    png = encode(Image.new("RGB", (16, 16), "white"), "PNG")
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="image"; filename="a\x00.png"\r\n'
        b"Content-Type: " + content_type + b"\r\n\r\n" + png + b"\r\n--XyZ--\r\n"
    )
    return body, "multipart/form-data; boundary=XyZ"


@pytest.mark.parametrize("name", ["x\\u0000", "\\ud800"])
def test_a_tensor_name_with_nul_or_a_lone_surrogate_is_400_and_recorded(api, tensor_version, name):
    """The parsing layer refuses such JSON text for every door (apps/core/negotiation.py);
    the version is known by then, so the refusal is still recorded."""
    body = '{"inputs": {"x": [[1, 2, 3, 4]], "n": [1], "NAME": [1]}}'.replace("NAME", name)
    response = api.generic("POST", "/api/v1/models/doubler/predict", body, content_type="application/json")
    assert_error_shape(response, 400, "invalid_text")
    row = Prediction.objects.get()
    assert (row.status, row.error_code) == ("failed", "invalid_text")


def test_a_nul_in_a_parts_content_type_is_answered_and_recorded(api, tiny_version):
    body, content_type = multipart_with_part_type(b"image/p\x00ng")
    response = api.generic("POST", "/api/v1/models/tiny/predict", body, content_type=content_type)
    assert response.status_code == 200, response.content
    row = Prediction.objects.get()
    assert row.status == "succeeded"
    assert row.input_meta["content_type"] == "image/png"
    assert row.input_meta["filename"] == "a.png"


@pytest.mark.usefixtures("enqueued")
def test_a_nul_in_a_parts_content_type_becomes_a_job(key_client, tiny_version):
    body, content_type = multipart_with_part_type(b"image/p\x00ng")
    response = key_client().generic(
        "POST", "/api/v1/models/tiny/predict", body, content_type=content_type, HTTP_PREFER="respond-async"
    )
    assert response.status_code == 202, response.content
    assert JobItem.objects.get().content_type == "image/png"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("image/png", "image/png"),
        ("a\x00b", "ab"),
        ("\ud800x", "\ufffd\ufffd\ufffdx"),  # a lone surrogate from a JSON escape
        ("caf\udcc3\udca9", "café"),  # bytes kept by surrogateescape that are UTF-8 after all
        ("\udcff", "\ufffd"),  # and bytes that are not
        ("x" * 300, "x" * 100),
    ],
)
def test_client_text_is_storable_and_encodable(value, expected):
    cleaned = client_text(value, 100)
    assert cleaned == expected
    cleaned.encode("utf-8")  # never raises


@pytest.mark.django_db(transaction=False)
def test_the_renderer_writes_a_lone_surrogate_as_an_escape():
    assert json.loads(JSONRenderer().render({"name": "\ud800", "label": "café"})) == {
        "name": "\ud800",
        "label": "café",
    }
    assert JSONRenderer().render({"label": "café"}) == '{"label":"café"}'.encode()  # UTF-8 as before
