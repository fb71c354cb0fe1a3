"""Added latency of authentication per request: API key, JWT and OAuth 2.0 access token
against no authentication.

Runs in one process on a scratch database (SQLite by default; set DATABASE_URL
for PostgreSQL), calling a cheap endpoint through Django's full middleware and
DRF stack. Rounds of the variants are interleaved so that machine noise hits all of
them alike; the report gives medians and the differences (and an OAuth token's against an
API key's, the target being within 0.3 ms at p50).

    .venv/bin/python bench/auth_overhead.py [--requests 2000]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django() -> None:
    scratch = tempfile.mkdtemp(prefix="mlp-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch}/bench.sqlite3")
    os.environ.setdefault("MODEL_STORE_ROOT", scratch)
    os.environ["DJANGO_SETTINGS_MODULE"] = "mlplatform.settings.local"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    setup_django()

    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.models import User
    from apps.accounts.services.api_keys import api_key_create
    from apps.oauth.services import application_create

    setup_test_environment()
    user = User.objects.create_user("bench", password="x" * 12)
    key = api_key_create(owner=user, name="bench", scopes=["models:read"]).key
    oauth = application_create(
        owner=user, name="bench", grant_type="client_credentials", scopes=["models:read"]
    )
    token = APIClient().post(
        "/oauth/token/",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic_auth(oauth.application.client_id, oauth.client_secret),
    )
    clients = {
        "none (forced)": APIClient(),
        "api key": APIClient(),
        "jwt": APIClient(),
        "oauth token": APIClient(),
    }
    clients["none (forced)"].force_authenticate(user)
    clients["api key"].credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    clients["jwt"].credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    clients["oauth token"].credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access_token']}")

    url = "/api/v1/models/"
    for client in clients.values():  # warm up
        for _ in range(50):
            assert client.get(url).status_code == 200
    samples: dict[str, list[float]] = {name: [] for name in clients}
    per_round = max(args.requests // args.rounds, 1)
    for _ in range(args.rounds):
        for name, client in clients.items():
            for _ in range(per_round):
                started = time.perf_counter()
                client.get(url)
                samples[name].append((time.perf_counter() - started) * 1000)

    base = statistics.median(samples["none (forced)"])
    database = os.environ["DATABASE_URL"].split(":")[0]
    print(f"endpoint GET {url}, {per_round * args.rounds} requests per variant, database {database}")
    print(f"{'variant':<16}{'p50 ms':>9}{'p95 ms':>9}{'added p50 ms':>14}{'ratio':>8}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        p95 = statistics.quantiles(values, n=20)[18]
        print(f"{name:<16}{p50:>9.3f}{p95:>9.3f}{p50 - base:>14.3f}{p50 / base:>8.2f}")
    # Per round too: the rounds ran back to back, so each difference sees the same noise.
    rounds = [
        statistics.median(samples["oauth token"][i : i + per_round])
        - statistics.median(samples["api key"][i : i + per_round])
        for i in range(0, per_round * args.rounds, per_round)
    ]
    oauth_minus_key = statistics.median(samples["oauth token"]) - statistics.median(samples["api key"])
    spread = f"{min(rounds):+.3f} to {max(rounds):+.3f}, median {statistics.median(rounds):+.3f}"
    print(f"oauth token - api key: {oauth_minus_key:+.3f} ms at p50 (per-round medians: {spread})")


def basic_auth(client_id: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


if __name__ == "__main__":
    main()
