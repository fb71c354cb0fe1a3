"""The `mlp` client around a request: busy answers (429, 503, 409 idempotency_key_in_use) tried
again after `Retry-After`, within bounds; the quoted Idempotency-Key; the upload progress bar.
Against the in-test fake of the jobs API (tests/client/test_cli.py)."""

import io
import os
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from mlplatform_client.transfer import (
    ProgressReader,
    UploadBar,
    quoted_key,
    retry_after_seconds,
    worth_retrying,
)

from tests.client.test_cli import (  # noqa: F401
    API_KEY,
    FakeApi,
    api,  # the client package, importable once test_cli set sys.path
    images,
    no_retry_pause,
    run,
    server,
    session,
)

NOW = 1_800_000_000.0


def client_for(server: FakeApi, waits: list[float], **options: float) -> api.Client:  # noqa: F811
    return api.Client(server.url, API_KEY, sleep=waits.append, **options)


def some_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))


# -- Retry-After ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value, seconds):
    assert retry_after_seconds(value, now=NOW) == seconds


def test_which_answers_are_worth_retrying():
    assert worth_retrying(429, "throttled", safe=False)
    assert worth_retrying(503, "service_unavailable", safe=True)
    assert not worth_retrying(503, "service_unavailable", safe=False)
    assert worth_retrying(409, "idempotency_key_in_use", safe=False)
    assert not worth_retrying(409, "job_finished", safe=True)
    assert not worth_retrying(500, "server_error", safe=True)


def test_a_429_is_sent_again_after_the_seconds_it_asks_for(server: FakeApi, images: Path):  # noqa: F811
    server.busy = [(429, "throttled", {"Retry-After": "2"})]
    waits: list[float] = []

    result = client_for(server, waits).submit_job("resnet18", some_files(images))

    assert result.created and waits == [2.0]
    first, second = server.posts()
    assert first.body == second.body
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert len(server.jobs) == 1


def test_an_http_date_retry_after_is_waited_until(server: FakeApi, images: Path):  # noqa: F811
    when = datetime.now(UTC) + timedelta(seconds=30)
    server.busy = [(503, "service_unavailable", {"Retry-After": format_datetime(when, usegmt=True)})]
    waits: list[float] = []

    job = client_for(server, waits).submit_job("resnet18", some_files(images)).job

    assert client_for(server, waits).get_job(job["id"])["id"] == job["id"]
    assert len(waits) == 1 and 25 < waits[0] <= 30


def test_without_retry_after_the_backoff_applies(server: FakeApi, images: Path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(session, "RETRY_BACKOFF_SECONDS", (0.25, 0.5))
    server.busy = [(429, "throttled", {}), (429, "throttled", {}), (429, "throttled", {})]
    waits: list[float] = []

    client_for(server, waits).submit_job("resnet18", some_files(images))

    assert waits == [0.25, 0.5, 0.5]


def test_busy_answers_are_tried_again_a_bounded_number_of_times(server: FakeApi, images: Path):  # noqa: F811
    server.busy = [(429, "throttled", {"Retry-After": "1"})] * 5
    waits: list[float] = []

    with pytest.raises(api.ApiError) as refused:
        client_for(server, waits, retries=3).submit_job("resnet18", some_files(images))

    assert refused.value.status == 429
    assert waits == [1.0, 1.0, 1.0]
    assert len(server.posts()) == 4
    assert not server.jobs


def test_a_wait_longer_than_allowed_is_not_waited(server: FakeApi, images: Path):  # noqa: F811
    server.busy = [(429, "throttled", {"Retry-After": "3600"})]
    waits: list[float] = []

    with pytest.raises(api.ApiError) as refused:
        client_for(server, waits, max_retry_wait=60).submit_job("resnet18", some_files(images))

    assert (refused.value.status, waits, len(server.posts())) == (429, [], 1)


def test_a_key_still_in_use_is_tried_again_and_gets_the_job(server: FakeApi, images: Path):  # noqa: F811
    server.busy = [(409, "idempotency_key_in_use", {})]
    waits: list[float] = []

    result = client_for(server, waits).submit_job("resnet18", some_files(images), idempotency_key="k-7")

    assert result.created and result.idempotency_key == "k-7" and waits == [0.0]
    assert [post.headers["Idempotency-Key"] for post in server.posts()] == ['"k-7"', '"k-7"']


def test_other_errors_are_not_retried(server: FakeApi, images: Path):  # noqa: F811
    server.busy = [(409, "job_finished", {"Retry-After": "1"})]
    waits: list[float] = []

    with pytest.raises(api.ApiError):
        client_for(server, waits).submit_job("resnet18", some_files(images))

    assert (waits, len(server.posts())) == ([], 1)


def test_the_command_waits_out_a_429(server: FakeApi, images: Path, capsys):  # noqa: F811
    server.busy = [(429, "throttled", {"Retry-After": "0"})]

    assert run(server, "jobs", "submit", str(images), "--model", "resnet18", "--no-wait") == 0

    assert len(server.posts()) == 2 and len(server.jobs) == 1


# -- the quoted key ---------------------------------------------------------------------------


def test_a_key_is_sent_as_a_structured_field_string():
    assert quoted_key("order-42") == '"order-42"'
    assert quoted_key('say "hi" \\') == '"say \\"hi\\" \\\\"'
    for bad in ("", "caf\u00e9", "tab\there"):
        with pytest.raises(ValueError):
            quoted_key(bad)


# -- upload progress --------------------------------------------------------------------------


def test_the_upload_streams_and_reports_its_progress(server: FakeApi, tmp_path: Path):  # noqa: F811
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(300_000))
    reports: list[tuple[int, int]] = []

    api.Client(server.url, API_KEY).submit_job("resnet18", [big], progress=lambda *r: reports.append(r))

    [post] = server.posts()
    total = int(post.headers["Content-Length"])
    assert len(reports) > 10  # read block by block, not in one piece
    assert [sent for sent, _ in reports] == sorted(sent for sent, _ in reports)
    assert reports[-1] == (total, total) == (len(post.body), len(post.body))


def test_the_bar_is_redrawn_at_most_ten_times_a_second_and_ends_its_line():
    out, clock = io.StringIO(), iter([0.0, 0.01, 0.02, 0.15, 0.16, 0.5])
    bar = UploadBar(out, clock=lambda: next(clock))

    for sent in (100, 200, 300, 400, 1000):
        bar(sent, 1000)

    lines = out.getvalue().split("\r")[1:]
    assert len(lines) == 3  # at 0.01 s, at 0.15 s, and the last one
    assert "  10%" in lines[0] and " 100%" in lines[-1] and lines[-1].endswith("\n")
    assert lines[-1].startswith("upload [########################]")


def test_a_retried_upload_draws_its_bar_again():
    out = io.StringIO()
    reader = ProgressReader(io.BytesIO(b"x" * 10), 10, UploadBar(out, clock=time.monotonic))

    reader.read()
    reader.seek(0)
    reader.read()

    assert out.getvalue().count("100%") == 2


def test_the_command_shows_the_bar_when_asked(server: FakeApi, images: Path, capsys):  # noqa: F811
    assert run(server, "jobs", "submit", str(images), "--model", "m", "--no-wait", "--progress") == 0
    assert "upload [" in capsys.readouterr().err

    assert run(server, "jobs", "submit", str(images), "--model", "m", "--no-wait") == 0
    assert "upload [" not in capsys.readouterr().err  # stderr is not a terminal here
