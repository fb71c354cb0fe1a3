"""End to end: OAuth 2.0 with a standard client library (Authlib) against a live gunicorn and a
real Celery worker, on the configured PostgreSQL and Redis (in CI).

The client-credentials flow and the authorization-code flow with PKCE (a user signs in and
consents, as a browser would), then a prediction and a batch job with each token; refresh
with rotation, introspection and revocation. The server runs the local settings, as `make
run` does: the production settings mark the session cookie Secure, which a browser (or
requests) never sends back over plain HTTP.
"""

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests import live, onnx_models
from tests.live import BIN, ROOT, login, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "oauth-e2e-password"
PREPROCESSING = (
    '{"resize": 8, "crop": 8, "mean": [127.0], "std": [128.0], "softmax": true}'  # the tiny classifier's
)


def _broker_url() -> str:
    """A Redis database of its own for this stack's queues (so no other test's worker takes
    its jobs), or the filesystem broker without Redis."""
    base = os.environ.get("REDIS_URL", "")
    return urlunsplit(urlsplit(base)._replace(path="/14")) if base else "filesystem://"


@pytest.fixture(scope="module")
def oauth_stack(e2e_dir: Path, database_url: str) -> Iterator[dict]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlplatform.settings.local",
        "DATABASE_URL": database_url,
        "MODEL_STORE_ROOT": str(e2e_dir / "store"),
        "BROKER_DIR": str(e2e_dir / "broker"),
        "CELERY_BROKER_URL": _broker_url(),
        "CACHE_KEY_PREFIX": f"oauth-e2e-{uuid.uuid4().hex}",
        "PYTHONUNBUFFERED": "1",
        "PRELOAD_ALIASES": "",
    }
    live.migrate(env)
    live.create_users(env, ["alice", "bob"], PASSWORD)
    model = e2e_dir / "tiny.onnx"
    model.write_bytes(onnx_models.tiny_classifier())
    (e2e_dir / "labels.txt").write_text("a\nb\nc\n")
    (e2e_dir / "preprocessing.json").write_text(PREPROCESSING)
    live.manage(
        env,
        "register_model",
        "--name=tiny",
        f"--file={model}",
        f"--labels={e2e_dir / 'labels.txt'}",
        f"--preprocessing={e2e_dir / 'preprocessing.json'}",
        "--alias=production",
        "--owner=alice",
        quiet=True,
    )
    web = live.start_web(env, e2e_dir / "oauth-web.log")
    worker = live.start_worker(env, e2e_dir / "oauth-worker.log", "jobs,default", loglevel=None)
    try:
        web.wait_ready(f"{web.url} to answer", path="/healthz")
        yield {"url": web.url, "logs": e2e_dir}
    finally:
        live.stop(web, worker)


def register(url: str, **fields: object) -> dict:
    """Register an application over the API, as alice (with a JWT: OAuth tokens cannot)."""
    response = login(url, "alice", PASSWORD).post(
        f"{url}/api/v1/oauth/applications/", json=fields, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def predict_and_submit_a_job(session: OAuth2Session, url: str) -> None:
    """A prediction and a batch job with the session's token; the job runs on the worker."""
    image = (ROOT / "demo" / "images" / "coffee.jpg").read_bytes()
    predicted = session.post(f"{url}/api/v1/models/tiny/predict", files={"image": image}, timeout=30)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"][0]["top_k"][0]["label"] in ("a", "b", "c")
    submitted = session.post(
        f"{url}/api/v1/jobs/", data={"model": "tiny"}, files={"inputs": ("coffee.jpg", image)}, timeout=30
    )
    assert submitted.status_code == 202, submitted.text
    job_url = f"{url}/api/v1/jobs/{submitted.json()['id']}/"

    def finished() -> dict | None:
        job = session.get(job_url, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    assert wait_for(finished, 60, "the worker to run the job")["status"] == "succeeded"


def audit_applications(session: OAuth2Session, url: str) -> dict[str, set[str]]:
    rows = session.get(f"{url}/api/v1/predictions/?model=tiny", timeout=10).json()["results"]
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["source"], set()).add(row["oauth_application"])
    return found


def test_a_machine_client_gets_a_token_predicts_and_runs_a_job(oauth_stack: dict) -> None:
    url = oauth_stack["url"]
    app = register(url, name="pipeline", grant_type="client_credentials", scopes=["predict", "jobs"])
    session = OAuth2Session(app["client_id"], app["client_secret"], scope="predict jobs")
    token = session.fetch_token(f"{url}/oauth/token/", grant_type="client_credentials")
    assert token["expires_in"] == 900
    assert token["access_token"].startswith("mlpat_")
    assert "refresh_token" not in token

    predict_and_submit_a_job(session, url)
    assert audit_applications(session, url) == {"sync": {app["client_id"]}, "job": {app["client_id"]}}

    described = session.introspect_token(f"{url}/oauth/introspect/", token=token["access_token"]).json()
    assert described["active"] is True
    assert described["client_id"] == app["client_id"]
    assert described["scope"] == "jobs predict"

    assert session.revoke_token(f"{url}/oauth/revoke/", token=token["access_token"]).status_code == 200
    refused = session.get(f"{url}/api/v1/me/", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
    described = session.introspect_token(f"{url}/oauth/introspect/", token=token["access_token"]).json()
    assert described == {"active": False}


def test_authlib_fetches_new_tokens_by_itself_and_mlp_runs_a_job_with_client_credentials(
    oauth_stack: dict, tmp_path: Path
) -> None:
    """Authlib as the README sets it up, and mlp with client credentials, against the server."""
    url = oauth_stack["url"]
    app = register(url, name="nightly", grant_type="client_credentials", scopes=["predict", "jobs"])
    # A leeway of all but a second of the token's 900: "about to expire" a second from now.
    session = OAuth2Session(
        app["client_id"],
        app["client_secret"],
        scope="predict jobs",
        token_endpoint=f"{url}/oauth/token/",
        grant_type="client_credentials",
        leeway=899,
    )
    first = session.fetch_token(f"{url}/oauth/token/")["access_token"]
    time.sleep(2.1)
    assert session.get(f"{url}/api/v1/me/", timeout=10).status_code == 200
    assert session.token["access_token"] != first  # fetched again before the request

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.jpg", "chelsea.jpg"):
        (photos / name).write_bytes((ROOT / "demo" / "images" / name).read_bytes())
    env = {**os.environ, "MLP_CLIENT_ID": app["client_id"], "MLP_CLIENT_SECRET": app["client_secret"]}
    env.pop("MLP_API_KEY", None)
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [str(BIN / "mlp"), "--url", url, "jobs", "submit", str(photos), "--model", "tiny", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 2


class _Form(HTMLParser):
    """The consent page's form fields (hidden inputs and the allow button)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("input", "button") and values.get("name"):
            self.fields[values["name"]] = values.get("value") or ""


def sign_in_and_consent(url: str, authorization_url: str) -> str:
    """What a browser does: the login page, the consent page, Authorize; the redirect it
    ends on (not followed: nothing listens there)."""
    browser = requests.Session()
    to_login = browser.get(authorization_url, allow_redirects=False, timeout=10)
    assert to_login.status_code == 302 and to_login.headers["Location"].startswith("/login/")
    login_page = browser.get(url + to_login.headers["Location"], timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
    next_url = parse_qs(urlsplit(to_login.headers["Location"]).query)["next"][0]
    signed_in = browser.post(
        f"{url}/login/",
        data={"csrfmiddlewaretoken": csrf, "username": "bob", "password": PASSWORD, "next": next_url},
        headers={"Referer": f"{url}/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 302, signed_in.text
    consent_page = browser.get(url + signed_in.headers["Location"], timeout=10)
    assert "asks to act for you, <strong>bob</strong>" in consent_page.text
    form = _Form()
    form.feed(consent_page.text)
    form.fields["allow"] = "true"
    decided = browser.post(
        consent_page.url,
        data=form.fields,
        headers={"Referer": consent_page.url},
        allow_redirects=False,
        timeout=10,
    )
    assert decided.status_code == 302, decided.text
    return decided.headers["Location"]


def test_a_third_party_application_acts_for_a_user_who_consented(oauth_stack: dict) -> None:
    url = oauth_stack["url"]
    redirect_uri = "http://127.0.0.1:8765/callback"  # a loopback redirect, as a native app's
    app = register(
        url,
        name="Photo sorter",
        grant_type="authorization_code",
        redirect_uris=[redirect_uri],
        scopes=["predict", "jobs", "models:read"],
        models=["tiny"],
    )
    # bob may use alice's model: it is private, so alice grants him a role first.
    granted = login(url, "alice", PASSWORD).put(
        f"{url}/api/v1/models/tiny/grants/bob/", json={"role": "consumer"}, timeout=10
    )
    assert granted.status_code == 200, granted.text

    session = OAuth2Session(
        app["client_id"],
        app["client_secret"],
        scope="predict jobs",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    authorization_url, state = session.create_authorization_url(
        f"{url}/oauth/authorize/", code_verifier=verifier
    )
    callback = sign_in_and_consent(url, authorization_url)
    assert callback.startswith(redirect_uri)
    token = session.fetch_token(
        f"{url}/oauth/token/", authorization_response=callback, code_verifier=verifier, state=state
    )
    assert token["refresh_token"].startswith("mlprt_")
    me = session.get(f"{url}/api/v1/me/", timeout=10).json()
    assert me["username"] == "bob"
    assert me["authenticated_with"] == f"oauth:{app['client_id']}"

    predict_and_submit_a_job(session, url)
    assert audit_applications(session, url) == {"sync": {app["client_id"]}, "job": {app["client_id"]}}
    # The token holds the scopes asked for, not the application's models:read.
    assert session.get(f"{url}/api/v1/models/", timeout=10).json()["error"]["code"] == "scope_missing"

    # Refreshing rotates the refresh token; the old one, presented again, revokes them all.
    old_refresh = token["refresh_token"]
    refreshed = session.refresh_token(f"{url}/oauth/token/")
    assert refreshed["refresh_token"] != old_refresh
    assert session.get(f"{url}/api/v1/me/", timeout=10).status_code == 200
    with pytest.raises(OAuthError) as replayed:
        session.refresh_token(f"{url}/oauth/token/", refresh_token=old_refresh)
    assert replayed.value.error == "invalid_grant"
    assert session.get(f"{url}/api/v1/me/", timeout=10).status_code == 401

    # The same code a second time: refused (its tokens were revoked already, above).
    with pytest.raises(OAuthError) as reused:
        session.fetch_token(f"{url}/oauth/token/", authorization_response=callback, code_verifier=verifier)
    assert reused.value.error == "invalid_grant"


def test_the_server_metadata_is_what_a_client_library_discovers(oauth_stack: dict) -> None:
    url = oauth_stack["url"]
    metadata = requests.get(f"{url}/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["issuer"] == url
    assert metadata["token_endpoint"] == f"{url}/oauth/token/"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
