"""The predict endpoint's in-memory multipart parser (apps/core/parsers.py)."""

import base64

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


def answers(api, body: bytes, settings, content_type: str = "") -> tuple:
    """The endpoint's answer to `body` from the in-memory path, then from Django's parser."""
    content_type = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    fast = api.generic("POST", URL, body, content_type=content_type)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10  # every body is bigger: Django's parser runs
    slow = api.generic("POST", URL, body, content_type=content_type)
    return fast, slow


def same(fast, slow) -> None:
    assert fast.status_code == slow.status_code, (fast.content, slow.content)
    assert fast.status_code < 500
    if fast.status_code == 200:
        assert fast.json()["predictions"] == slow.json()["predictions"]
    else:
        assert fast.json()["error"]["code"] == slow.json()["error"]["code"]


UNUSUAL = {
    "truncated": form(("image", "a.png", png()), close=False)[:-10],
    "no closing boundary": form(("image", "a.png", png()), close=False),
    "rfc 2231 file name": (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename*=UTF-8''a%C3%A9.png\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    + png()
    + f"\r\n--{BOUNDARY}--\r\n".encode(),
    "transfer encoding": (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Transfer-Encoding: base64\r\nContent-Type: image/png\r\n\r\n"
    ).encode()
    + base64.b64encode(png())
    + f"\r\n--{BOUNDARY}--\r\n".encode(),
    "no disposition": f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n".encode()
    + form(("image", "a.png", png())),
}


@pytest.mark.parametrize("kind", sorted(UNUSUAL))
def test_an_unusual_body_gets_the_same_answer_as_from_djangos_parser(api, tiny_version, settings, kind):
    same(*answers(api, UNUSUAL[kind], settings))


def test_a_charset_that_is_not_a_text_encoding_is_a_4xx_as_with_django(api, tiny_version, settings):
    body = form(("image", "a.png", png()), ("top_k", None, b"1"))
    fast, slow = answers(api, body, settings, f"multipart/form-data; boundary={BOUNDARY}; charset=zlib")
    same(fast, slow)


def test_field_names_are_stripped_as_django_does(api, tiny_version, settings):
    same(*answers(api, form(("image", "a.png", png()), (" top_k ", None, b"1")), settings))


@pytest.mark.parametrize("query", ["?top_k=", "?version=", "?alias="])
def test_an_empty_query_parameter_counts_as_not_given(api, tiny_version, query):
    response = api.generic(
        "POST",
        URL + query,
        form(("image", "a.png", png())),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert response.status_code == 200, response.content


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
