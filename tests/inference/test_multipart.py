"""The predict endpoint's in-memory multipart parser (apps/core/parsers.py)."""

import pytest
from PIL import Image

from apps.inference.models import Prediction
from tests.inference.conftest import encode

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/tiny/predict"
BOUNDARY = "testboundary42"


def png(colour: str = "white") -> bytes:
    return encode(Image.new("RGB", (16, 16), colour), "PNG")


def form(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            body += b"Content-Type: image/png\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def post(api, body: bytes):
    return api.generic("POST", URL, body, content_type=f"multipart/form-data; boundary={BOUNDARY}")


def test_two_files_and_a_field(api, tiny_version):
    response = post(
        api, form(("image", "a.png", png()), ("image", "b.png", png("black")), ("top_k", None, b"2"))
    )
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert [len(p["top_k"]) for p in predictions] == [2, 2]
    names = sorted(row.input_meta["filename"] for row in Prediction.objects.all())
    assert names == ["a.png", "b.png"]


def test_a_truncated_body_is_400(api, tiny_version):
    body = form(("image", "a.png", png()), close=False)[:-10]
    response = post(api, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_a_body_without_the_boundary_is_400(api, tiny_version):
    response = post(api, b"this is not a multipart body at all")
    assert response.status_code == 400


def test_too_many_fields_is_400(api, tiny_version, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2
    response = post(api, form(*[(f"f{i}", None, b"x") for i in range(3)], ("image", "a.png", png())))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_a_body_over_the_in_memory_size_takes_djangos_parser(api, tiny_version, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # the body is bigger: the streaming parser runs
    response = post(api, form(("image", "a.png", png()), ("top_k", None, b"1")))
    assert response.status_code == 200, response.content
    assert len(response.json()["predictions"][0]["top_k"]) == 1


def test_the_same_image_gives_the_same_answer_from_both_parsers(api, tiny_version, settings):
    body = form(("image", "a.png", png("red")))
    fast = post(api, body).json()["predictions"]
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100
    assert post(api, body).json()["predictions"] == fast
    digests = set(Prediction.objects.values_list("input_sha256", flat=True))
    assert len(digests) == 1


def test_file_names_lose_their_path_as_with_djangos_parser(api, tiny_version):
    response = post(api, form(("image", "../../etc/a.png", png()), ("image", "C:\\temp\\b.png", png())))
    assert response.status_code == 200, response.content
    names = sorted(row.input_meta["filename"] for row in Prediction.objects.all())
    assert names == ["a.png", "b.png"]


def test_a_file_part_without_a_name_is_skipped(api, tiny_version):
    empty = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename=""\r\n\r\n\r\n'
    response = post(api, empty.encode() + form(("image", "a.png", png())))
    assert response.status_code == 200, response.content
    assert len(response.json()["predictions"]) == 1


def test_a_field_in_a_bad_charset_is_replaced_not_a_500(api, tiny_version):
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="top_k"\r\n'
            "Content-Type: text/plain; charset=no-such-charset\r\n\r\n"
        ).encode()
        + b"\xff\xfe\r\n"
        + form(("image", "a.png", png()))
    )
    response = post(api, body)
    assert response.status_code == 400  # top_k is not a number: a validation error, not a crash
    assert "top_k" in response.json()["error"]["details"]
