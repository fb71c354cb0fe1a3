"""Added latency of authentication per request: API key and JWT against no authentication.

Runs in one process on a scratch database (SQLite by default; set DATABASE_URL
for PostgreSQL), calling a cheap endpoint through Django's full middleware and
DRF stack. Rounds of the three variants are interleaved so that machine noise
hits all of them alike; the report gives medians and the differences.

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
    from apps.accounts.services import api_key_create

    setup_test_environment()
    user = User.objects.create_user("bench", password="x" * 12)
    key = api_key_create(owner=user, name="bench", scopes=["models:read"]).key
    clients = {"none (forced)": APIClient(), "api key": APIClient(), "jwt": APIClient()}
    clients["none (forced)"].force_authenticate(user)
    clients["api key"].credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    clients["jwt"].credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")

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


if __name__ == "__main__":
    main()
