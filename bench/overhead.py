"""Where the platform's own overhead goes at concurrency 1, part by part.

    .venv/bin/python bench/overhead.py [--model tiny] [--rounds 40]

Sets the platform up as bench/serving.py does (production settings, PostgreSQL,
Redis, API key, throttle, quota and an audit row per request), then calls the WSGI
application in this process, one request at a time: no HTTP server, no load
generator. The requests are the benchmark's multipart photo uploads. Variants switch
one part off at a time:

- full: everything on;
- no HTTP metrics: without django-prometheus' two middlewares;
- no throttle: without the rate-limit counter (one Redis round trip);
- no audit: without the statement that spends quota and writes the audit row (one
  PostgreSQL round trip);
- bare: none of the three.

The variants run interleaved, ten requests each per round, next to the model work
alone (decode + preprocess + inference, no Django), so each sees the same machine.
Medians per request, and each variant's distance from the model work alone.

Then a plain round trip (Redis PING, PostgreSQL SELECT 1) right after 0, 1, 3 and 10 ms
of CPU work: on a virtual machine, a server process that went idle while the request
computed answers later than one that was just busy. At concurrency 1 every round
trip of a request pays this.
"""

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from serving import PHOTOS, ROOT, Platform  # bench/ is on sys.path when run

BOUNDARY = "mlplatformbenchboundary"


def _bodies() -> list[bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return [head + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode() for path in PHOTOS]


def _environ(model: str, key: str, body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/models/{model}/predict",
        "QUERY_STRING": "",
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_API_KEY": key,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
    }


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def _median_ms(call: Callable[[], object], count: int, before: Callable[[], None] = lambda: None) -> float:
    samples = []
    for _ in range(count):
        before()
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def parts(model: str, key: str, rounds: int) -> dict[str, float]:
    """Median ms per request of each variant, and of the model work alone."""
    import gc

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    from apps.accounts.throttling import ScopedRateThrottle
    from apps.inference import audit as audit_module
    from apps.inference import sessions
    from apps.inference.preprocessing import decode_image, image_to_array
    from apps.registry.models import ModelVersion

    sessions.preload_sessions()
    full_middleware = list(settings.MIDDLEWARE)

    def handler(middleware: list[str]) -> WSGIHandler:
        settings.MIDDLEWARE = middleware
        try:
            return WSGIHandler()
        finally:
            settings.MIDDLEWARE = full_middleware

    no_metrics = [m for m in full_middleware if not m.startswith("django_prometheus.")]
    allow, write = ScopedRateThrottle.allow_request, audit_module.insert_predictions_spending_quota
    variants = {  # name: (application, throttle on, audit on)
        "full": (handler(full_middleware), True, True),
        "no HTTP metrics": (handler(no_metrics), True, True),
        "no throttle": (handler(full_middleware), False, True),
        "no audit": (handler(full_middleware), True, False),
        "bare": (handler(no_metrics), False, False),
    }
    bodies = _bodies()
    version = ModelVersion.objects.select_related("model").get(model__name=model, aliases__name="production")
    loaded = sessions.loaded_model(version)
    photos = [path.read_bytes() for path in PHOTOS]
    counter = iter(range(10**9))

    def request(app: WSGIHandler) -> None:
        statuses: list[str] = []
        body = bodies[next(counter) % len(bodies)]
        response = app(
            _environ(model, key, body), lambda status, headers, exc_info=None: statuses.append(status)
        )
        content = b"".join(response)
        response.close()
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"{statuses[0]}: {content[:300]!r}")

    def model_alone() -> None:
        decoded = decode_image(photos[next(counter) % len(photos)], max_pixels=settings.MAX_IMAGE_PIXELS)
        loaded.run({loaded.input_names[0]: image_to_array(decoded.image, version.preprocessing)[None]})

    def switch(throttle: bool, audit: bool) -> None:
        ScopedRateThrottle.allow_request = allow if throttle else (lambda self, request, view: True)
        audit_module.insert_predictions_spending_quota = write if audit else (lambda *args: True)

    samples: dict[str, list[float]] = {"model alone": [], **{name: [] for name in variants}}
    try:
        for app, throttle, audit in variants.values():  # warm every path up
            switch(throttle, audit)
            for _ in range(20):
                request(app)
        gc.collect()
        gc.freeze()  # as gunicorn.conf.py does in every worker
        for _ in range(rounds):
            for name, (app, throttle, audit) in variants.items():
                switch(throttle, audit)
                samples[name].append(_median_ms(lambda app=app: request(app), 10))
            switch(True, True)
            samples["model alone"].append(_median_ms(model_alone, 10))
    finally:
        switch(True, True)
    return {name: statistics.median(values) for name, values in samples.items()}


def round_trips(count: int = 200) -> dict[str, dict[str, float]]:
    """Median ms of a Redis PING and a PostgreSQL SELECT 1 after `gap` ms of CPU work."""
    from django.core.cache import cache
    from django.db import connection

    redis = cache._cache.get_client(write=True)
    connection.ensure_connection()
    raw = connection.connection
    results = {}
    for gap in (0, 1, 3, 10):
        results[f"after {gap} ms"] = {
            "redis": _median_ms(redis.ping, count, lambda gap=gap: _busy(gap)),
            "postgresql": _median_ms(
                lambda: raw.execute("SELECT 1", prepare=True), count, lambda gap=gap: _busy(gap)
            ),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", choices=["tiny", "effnet"])
    parser.add_argument("--rounds", type=int, default=40, help="rounds of ten requests per variant")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlp-bench-"))
    platform = Platform(workdir)
    key = platform.set_up()
    try:
        os.environ.update(platform.env)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "metrics")
        (workdir / "metrics").mkdir()
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        medians = parts(args.model, key, args.rounds)
        trips = round_trips()
        from django.db import connections

        connections.close_all()
    finally:
        platform.tear_down()
    alone = medians["model alone"]
    print(f"\n{args.model}, one request at a time, in-process (median ms per request):")
    print(f"  {'':16} {'ms':>7} {'above model':>12}")
    for name, value in medians.items():
        print(f"  {name:16} {value:7.3f} {value - alone:12.3f}")
    print("\nA round trip right after some CPU work (median ms):")
    for gap, values in trips.items():
        print(f"  {gap:12} redis {values['redis']:.3f}  postgresql {values['postgresql']:.3f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    report = {"model": args.model, "rounds": args.rounds, "parts_ms": medians, "round_trips_ms": trips}
    (out / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
