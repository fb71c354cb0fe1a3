"""Project-wide checks: deploy settings, the OpenAPI schema, health endpoints."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def test_check_deploy_is_clean_with_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlplatform.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "ml.example.com",
        "DATABASE_URL": "postgres://mlp@db.example.com/mlplatform",
        "REDIS_URL": "redis://redis.example.com:6379/0",
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update({"DJANGO_SETTINGS_MODULE": "mlplatform.settings.production", "ALLOWED_HOSTS": "x"})
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORT_GRAPH_OPTIMIZATION", "everything"),
        ("INFERENCE_CONCURRENCY", "0"),
        ("ORT_INTRA_OP_THREADS", "-1"),
    ],
)
def test_settings_that_would_fail_every_prediction_stop_the_process_at_start(name, value):
    result = manage("check", env={**os.environ, name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_the_graph_optimization_level_is_read_case_insensitively():
    result = manage("check", env={**os.environ, "ORT_GRAPH_OPTIMIZATION": "ALL"})
    assert result.returncode == 0, result.stderr


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/api/v1/models/{name}/versions/" in (tmp_path / "schema.yml").read_text()


@pytest.mark.django_db
def test_the_schema_and_docs_are_served_without_a_cdn(client):
    assert client.get("/api/schema/").status_code == 200
    for url in ("/api/docs/", "/api/redoc/"):
        page = client.get(url).content.decode()
        assert "cdn.jsdelivr" not in page and "unpkg.com" not in page
        assert "/static/drf_spectacular_sidecar/" in page


def test_healthz_touches_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")
    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "model_store", "models"}
    assert response.status_code == 200, body


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_down(client, settings):
    from mlplatform.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


def test_health_endpoints_refuse_other_methods_in_the_error_shape(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_probes_answer_whatever_the_host_header(client, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    for path in ("/healthz", "/readyz", "/metrics"):
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")
        assert response.status_code == 200, (path, response.content)
    assert client.get("/api/v1/models/", HTTP_HOST="10.1.2.3:8000").status_code == 400


@pytest.mark.django_db
def test_probes_with_a_trailing_slash_are_answered_too(client, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    assert client.get("/healthz/", HTTP_HOST="10.1.2.3:8000").status_code == 200
