"""Fuzzing the whole API against its OpenAPI schema with schemathesis (schemathesis.toml):
a live gunicorn on the production settings, PostgreSQL and Redis (DATABASE_URL, REDIS_URL),
one run with an API key and one with a JWT, every check on, a fixed seed. It must find no
5xx and no schema or status-code violation. `make fuzz` runs only this."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import live
from tests.live import BIN, ROOT

pytestmark = [pytest.mark.e2e, *live.requires(postgres=True, redis=True)]

USERNAME, PASSWORD = "fuzz", "fuzz-password-1"


@pytest.fixture(scope="module")
def server(e2e_dir: Path, database_url: str) -> Iterator[dict]:
    env = live.production_env(
        e2e_dir,
        database_url,
        "fuzz",
        # The fuzzer's own requests without credentials must not lock its address out, nor
        # its bursts hit the rate limits: both are tested elsewhere, and are documented 429s.
        AUTH_FAILURE_RATE="100000/min",
        THROTTLE_RATE_PREDICT="100000/min",
        THROTTLE_RATE_JOBS="100000/min",
        THROTTLE_RATE_REGISTRY_WRITE="100000/min",
        MONTHLY_PREDICTION_QUOTA="",
    )
    live.migrate(env)
    live.collectstatic(env)
    live.create_users(env, [USERNAME], PASSWORD)
    (ROOT / "var" / "fuzz").mkdir(parents=True, exist_ok=True)
    web = live.start_web(env, ROOT / "var" / "fuzz" / "web.log", workers=2, timeout=60)
    try:
        web.wait_ready("the fuzzing server")
        yield {"url": web.url}
    finally:
        live.stop(web)


def jwt(url: str) -> str:
    body = {"username": USERNAME, "password": PASSWORD}
    response = requests.post(f"{url}/api/v1/auth/token/", json=body, timeout=10)
    response.raise_for_status()
    return f"Bearer {response.json()['access']}"


def api_key(url: str) -> str:
    scopes = ["models:read", "models:write", "predict", "jobs"]
    body = {"name": "fuzz", "scopes": scopes}
    response = requests.post(
        f"{url}/api/v1/api-keys/", json=body, headers={"Authorization": jwt(url)}, timeout=10
    )
    assert response.status_code == 201, response.text
    return f"Api-Key {response.json()['key']}"


def run_schemathesis(server: dict, authorization: str, name: str) -> dict:
    # Kept after the run (var/ is git-ignored), with the server's log, to read the failures.
    report = ROOT / "var" / "fuzz" / f"schemathesis-{name}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(ROOT / "schemathesis.toml"),
            "run",
            f"{server['url']}/api/schema/?format=json",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        env={**os.environ, "MLP_FUZZ_AUTHORIZATION": authorization},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    (report.parent / f"schemathesis-{name}.txt").write_text(result.stdout)
    return {"code": result.returncode, "stdout": result.stdout, "report": report}


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
def test_schemathesis_finds_nothing(server: dict, credential: str) -> None:
    authorization = api_key(server["url"]) if credential == "api_key" else jwt(server["url"])
    outcome = run_schemathesis(server, authorization, credential)
    tail = outcome["stdout"][-6000:]
    # The failures first (operation, check, status, the curl to replay it), then the summary.
    found = outcome["stdout"].partition("FAILURES")[2][:8000]
    assert outcome["code"] == 0, f"schemathesis ({credential}) found failures:\n{found}\n…\n{tail[-2500:]}"
    assert "No issues found" in outcome["stdout"] or "passed" in tail, tail
    if outcome["report"].exists():
        json.loads(outcome["report"].read_text())  # a complete report was written


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "?offset=" + "9" * 5000, 414),  # a request line over 4094 bytes
        ({"X-Routing-Key": "k" * 9000}, "", 431),  # a header over 8190 bytes
    ],
)
def test_the_servers_own_limits_are_the_documented_answers(
    server: dict, headers: dict, query: str, status: int
) -> None:
    """gunicorn answers these before the API sees the request; the schema lists both on every
    operation (apps/core/schema_errors.py), with gunicorn's HTML page as the body."""
    path = "/api/v1/models/"
    response = requests.get(f"{server['url']}{path}{query}", headers=headers, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    schema = requests.get(f"{server['url']}/api/schema/?format=json", timeout=30).json()
    assert "text/html" in schema["paths"][path]["get"]["responses"][str(status)]["content"]
