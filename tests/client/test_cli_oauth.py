"""`mlp` with OAuth 2.0 client credentials: it gets its own access token, and a new one
before the old expires or when the server refuses it, with no help from the user."""

from pathlib import Path

import pytest

from tests.client import test_cli as base
from tests.client.test_cli import CLIENT_ID, CLIENT_SECRET, FakeApi, api, cli

# The fake server and its fixtures, shared with the API-key tests.
server, images, no_retry_pause = base.server, base.images, base.no_retry_pause


def run_oauth(server: FakeApi, *args: str) -> int:
    return cli.main(["--url", server.url, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, *args])


def submit(server: FakeApi, images: Path, tmp_path: Path) -> int:
    out = str(tmp_path / "results.jsonl")
    return run_oauth(
        server, "jobs", "submit", str(images), "--model", "m", "--out", out, "--poll-interval", "0.01"
    )


def bearer_of(server: FakeApi, path_prefix: str = "/api/v1/") -> list[str]:
    return [r.headers["Authorization"] for r in server.requests if r.path.startswith(path_prefix)]


def test_it_gets_a_token_once_and_sends_it_as_a_bearer_token(server, images, tmp_path, capsys):
    assert submit(server, images, tmp_path) == 0, capsys.readouterr().err
    token_requests = [r for r in server.requests if r.path == "/oauth/token/"]
    assert len(token_requests) == 1
    assert token_requests[0].body == b"grant_type=client_credentials"
    assert set(bearer_of(server)) == {"Bearer mlpat_0"}
    assert all("X-API-Key" not in r.headers for r in server.requests)


def test_it_gets_a_new_token_before_the_old_one_expires(server, images, tmp_path, monkeypatch):
    server.token_lifetime = 60  # renewed 30 s before the end
    clock = [1000.0]
    monkeypatch.setattr(api.time, "monotonic", lambda: clock[0])
    client = api.Client(server.url, credentials=api.ClientCredentials(CLIENT_ID, CLIENT_SECRET))
    job = client.submit_job("m", sorted(images.glob("*.png"))).job
    clock[0] += 29
    client.get_job(job["id"])
    assert server.tokens == ["mlpat_0"]
    clock[0] += 2  # 31 s in: within the margin
    client.get_job(job["id"])
    assert server.tokens == ["mlpat_0", "mlpat_1"]
    assert bearer_of(server)[-1] == "Bearer mlpat_1"


def test_a_refused_token_is_replaced_and_the_request_sent_again(server, images, tmp_path):
    client = api.Client(server.url, credentials=api.ClientCredentials(CLIENT_ID, CLIENT_SECRET))
    job = client.submit_job("m", sorted(images.glob("*.png"))).job
    server.revoked.add("mlpat_0")  # revoked by its owner, or the server restarted its keys
    assert client.get_job(job["id"])["id"] == job["id"]
    assert server.tokens == ["mlpat_0", "mlpat_1"]


def test_a_token_refused_again_is_an_error_not_a_loop(server, images, tmp_path):
    client = api.Client(server.url, credentials=api.ClientCredentials(CLIENT_ID, CLIENT_SECRET))
    job = client.submit_job("m", sorted(images.glob("*.png"))).job
    server.revoked.update(f"mlpat_{n}" for n in range(5))
    with pytest.raises(api.ApiError) as raised:
        client.get_job(job["id"])
    assert raised.value.code == "invalid_token"
    assert len(server.tokens) == 2  # one renewal per request


def test_a_wrong_secret_is_the_servers_oauth_error_exit_1(server, images, tmp_path, capsys):
    code = cli.main(
        ["--url", server.url, "--client-id", CLIENT_ID, "--client-secret", "wrong", "jobs", "status", "x"]
    )
    assert code == 1
    assert "invalid_client" in capsys.readouterr().err


def test_the_credentials_come_from_the_environment(server, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLP_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MLP_CLIENT_SECRET", CLIENT_SECRET)
    out = str(tmp_path / "r.jsonl")
    code = cli.main(
        [
            "--url",
            server.url,
            "jobs",
            "submit",
            str(images),
            "--model",
            "m",
            "--out",
            out,
            "--poll-interval",
            "0.01",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert set(bearer_of(server)) == {"Bearer mlpat_0"}


def test_options_win_over_the_environment(server, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLP_API_KEY", "from-the-environment")
    assert submit(server, images, tmp_path) == 0, capsys.readouterr().err
    assert set(bearer_of(server)) == {"Bearer mlpat_0"}


@pytest.mark.parametrize(
    "args",
    [
        ["--client-id", CLIENT_ID],
        ["--client-secret", CLIENT_SECRET],
        ["--key", "k", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET],
    ],
)
def test_incomplete_or_mixed_credentials_exit_2(server, images, capsys, args):
    assert cli.main(["--url", server.url, *args, "jobs", "status", "x"]) == 2
    assert "credentials" in capsys.readouterr().err
    assert not server.requests


def test_it_asks_for_the_scope_given(server, images, tmp_path, capsys):
    assert run_oauth(server, "--scope", "jobs", "jobs", "status", "nope") == 1
    token_request = next(r for r in server.requests if r.path == "/oauth/token/")
    assert token_request.body == b"grant_type=client_credentials&scope=jobs"
