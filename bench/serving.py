"""Serving benchmark: the platform as deployed against the physical limit, in one run.

    .venv/bin/python bench/serving.py [--duration 10] [--repeat 3] [--servers gthread-2x2,sync-2]

What it does, all on this machine and in this run (the machines are noisy, so
only ratios within one run mean anything):

1. Creates a scratch PostgreSQL database (DATABASE_URL's server, default
   postgres://postgres@127.0.0.1:5432) and uses Redis (REDIS_URL, default
   redis://127.0.0.1:6379/0); migrates; registers the demo EfficientNet-Lite0
   and a tiny model; creates an API key.
2. The physical limit: decode + preprocess + ONNX Runtime inference of the same
   photos with the platform's own code, no HTTP, as 1 process x 1 thread and
   2 processes x 1 thread (the best configuration on these machines).
3. For each application-server configuration: starts gunicorn with the
   production settings, then closed-loop `wrk` clients at concurrency 1, 4 and 16
   POST the photos with API-key auth; throttling, quota and the audit row are on.
4. The platform's own overhead: the tiny model at concurrency 1, against the
   same tiny model's in-process latency.

Needs `wrk` (Debian: apt-get install wrk). Prints a table and writes
bench/results/serving-<time>.json.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

from common import CREATE_SUPERUSER, manage, register_demo  # bench/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "demo" / "images").glob("*.jpg"))
DEMO = ROOT / "demo" / "efficientnet_lite0"
BIN = Path(sys.executable).parent
SERVERS = {
    # --threads 1: gunicorn turns "sync" with threads > 1 (gunicorn.conf.py sets 2) into gthread.
    "sync-2": ["--worker-class", "sync", "--workers", "2", "--threads", "1"],
    "sync-3": ["--worker-class", "sync", "--workers", "3", "--threads", "1"],
    "gthread-2x1": ["--worker-class", "gthread", "--workers", "2", "--threads", "1"],
    "gthread-2x2": ["--worker-class", "gthread", "--workers", "2", "--threads", "2"],
    "gthread-2x4": ["--worker-class", "gthread", "--workers", "2", "--threads", "4"],
    "gthread-3x2": ["--worker-class", "gthread", "--workers", "3", "--threads", "2"],
}


# --- The physical limit -------------------------------------------------------------------------


def _limit_worker(seconds: float, model_path: str, preprocessing: dict, result) -> None:
    sys.path.insert(0, str(ROOT))
    from apps.inference.preprocessing import decode_image, image_to_array
    from apps.inference.runtime import RuntimeConfig, load_model

    model = load_model((0, ""), Path(model_path), RuntimeConfig(intra_op_threads=1))
    photos = [p.read_bytes() for p in PHOTOS]
    name = model.input_names[0]
    latencies, count, deadline = [], 0, time.perf_counter() + seconds
    cpu = time.process_time()
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        decoded = decode_image(photos[count % len(photos)], max_pixels=40_000_000)
        model.run({name: image_to_array(decoded.image, preprocessing)[None]})
        latencies.append((time.perf_counter() - started) * 1000)
        count += 1
    result.put((count, latencies, time.process_time() - cpu))


def physical_limit(
    processes: int, seconds: float, model_path: Path, preprocessing: dict, work=_limit_worker
) -> dict:
    """`processes` processes run `work` (by default: decode + preprocess + inference of the
    photos) for `seconds`; their throughput, latency, and CPU ms per image. `work` takes
    _limit_worker's arguments, puts what it does (count, latencies, CPU seconds), and must
    be importable by a spawned process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=work, args=(seconds, str(model_path), preprocessing, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(latency for _, values, _ in results for latency in values)
    count = sum(count for count, _, _ in results)
    return {
        "throughput": count / seconds,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "cpu_ms": sum(cpu for _, _, cpu in results) * 1000 / count,
    }


# --- The deployed platform ---------------------------------------------------------------------


class Platform:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        self.db_name = f"mlp_bench_{uuid.uuid4().hex[:8]}"
        self.admin_url = urlunsplit(urlsplit(base)._replace(path="/postgres"))
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mlplatform.settings.production",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "False",
            "DATABASE_URL": urlunsplit(urlsplit(base)._replace(path=f"/{self.db_name}")),
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "CACHE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "MODEL_STORE_ROOT": str(workdir / "store"),
            "STATIC_ROOT": str(workdir / "static"),
            "THROTTLE_RATE_PREDICT": "10000000/min",
            "MONTHLY_PREDICTION_QUOTA": "1000000000",
            "LOG_LEVEL": "WARNING",
        }

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    def set_up(self) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        try:
            return self._fill()
        except BaseException:
            self.tear_down()  # no scratch database or folder left behind
            raise

    def _fill(self) -> str:
        self.manage("migrate", "--noinput")
        self.manage(*CREATE_SUPERUSER)
        self.manage(*register_demo())
        tiny = Path(self.env["MODEL_STORE_ROOT"]).parent / "tiny.onnx"
        sys.path.insert(0, str(ROOT))
        from tests.onnx_models import tiny_classifier

        tiny.write_bytes(tiny_classifier())
        tiny_config = Path(self.env["MODEL_STORE_ROOT"]).parent / "tiny.json"
        tiny_config.write_text(
            json.dumps({**json.loads((DEMO / "preprocessing.json").read_text()), "resize": 8, "crop": 8})
        )
        self.manage(
            "register_model",
            "--name",
            "tiny",
            "--file",
            str(tiny),
            "--preprocessing",
            str(tiny_config),
            "--alias",
            "production",
        )
        return self.manage("create_api_key", "bench", "--name", "bench", "--scopes", "predict").strip()

    def tear_down(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.workdir, ignore_errors=True)

    def audit_rows(self) -> int:
        script = "from apps.inference.models import Prediction as P; print(P.objects.count())"
        return int(self.manage("shell", "--no-imports", "-c", script).split()[-1])

    def serve(self, server_args: list[str], port: int) -> subprocess.Popen:
        process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "mlplatform.wsgi",
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
                *server_args,
            ],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    time.sleep(1)  # let every worker finish preloading
                    return process
            except OSError:
                time.sleep(0.2)
        process.kill()
        raise RuntimeError("gunicorn did not start")


BODY = {"value": "multipart"}


def run_wrk(
    port: int,
    model: str,
    key: str,
    concurrency: int,
    seconds: float,
    *,
    path: str | None = None,
    script: Path = ROOT / "bench" / "predict.lua",
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Closed-loop `wrk` clients against /api/v1 predict (or `path`), sending the photos as
    predict.lua does (or as another `script`, configured by `extra_env`, prints its BENCH_JSON)."""
    env = {
        **os.environ,
        "BENCH_IMAGES": ":".join(map(str, PHOTOS)),
        "BENCH_PATH": path or f"/api/v1/models/{model}/predict",
        "BENCH_KEY": key,
        "BENCH_BODY": BODY["value"],
        **(extra_env or {}),
    }
    threads = min(concurrency, 2)
    output = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{max(int(seconds), 1)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH_JSON "))
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["throughput"] = result["requests"] / result["seconds"]
    return result


def tiny_in_process_latency(preprocessing: dict) -> float:
    sys.path.insert(0, str(ROOT))
    from apps.inference.preprocessing import decode_image, image_to_array
    from apps.inference.runtime import RuntimeConfig, load_model
    from tests.onnx_models import tiny_classifier

    path = Path(tempfile.mkdtemp()) / "tiny.onnx"
    path.write_bytes(tiny_classifier())
    model = load_model((0, ""), path, RuntimeConfig())
    photos = [p.read_bytes() for p in PHOTOS]
    samples = []
    for i in range(500):
        started = time.perf_counter()
        decoded = decode_image(photos[i % len(photos)], max_pixels=40_000_000)
        model.run({"input": image_to_array(decoded.image, preprocessing)[None]})
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; medians are reported")
    parser.add_argument("--servers", default="sync-2,gthread-2x2", help=f"of {', '.join(SERVERS)}")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument(
        "--body",
        choices=["multipart", "raw"],
        default="multipart",
        help="how the photo is sent: a multipart form field, or the raw body (Content-Type: image/jpeg)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/serving.py needs wrk: apt-get install wrk")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    BODY["value"] = args.body
    preprocessing = json.loads((DEMO / "preprocessing.json").read_text())
    workdir = Path(tempfile.mkdtemp(prefix="mlp-bench-"))
    platform = Platform(workdir)
    key = platform.set_up()
    report: dict = {"duration": args.duration, "repeat": args.repeat, "body": args.body, "servers": {}}
    try:
        port = 18000 + os.getpid() % 1000
        for server in args.servers.split(","):
            process = platform.serve(SERVERS[server], port)
            try:
                run_wrk(port, "effnet", key, 4, 2)  # warm-up
                results: dict = {}
                for concurrency in concurrencies:
                    runs = []
                    for _ in range(args.repeat):
                        # The limit is measured right before each served run: the machine's speed
                        # drifts by tens of percent within minutes, so only neighbours compare.
                        limit = physical_limit(2, args.duration, DEMO / "model.onnx", preprocessing)
                        served = run_wrk(port, "effnet", key, concurrency, args.duration)
                        runs.append(
                            {
                                **served,
                                "limit": limit["throughput"],
                                "ratio": served["throughput"] / limit["throughput"],
                            }
                        )
                    results[str(concurrency)] = _median(runs)
                tiny = [run_wrk(port, "tiny", key, 1, args.duration) for _ in range(args.repeat)]
                results["tiny-1"] = _median(tiny)
                report["servers"][server] = results
            finally:
                process.terminate()
                process.wait()
        report["limit"] = {
            f"{n}x1": physical_limit(n, args.duration, DEMO / "model.onnx", preprocessing) for n in (1, 2)
        }
        report["tiny_in_process_p50"] = tiny_in_process_latency({**preprocessing, "resize": 8, "crop": 8})
        report["audit_rows"] = platform.audit_rows()
    finally:
        platform.tear_down()
    print_report(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2))


def _median(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def print_report(report: dict) -> None:
    print("\nPhysical limit (decode + preprocess + ONNX Runtime, no HTTP):")
    for name, values in report["limit"].items():
        print(f"  {name} processes x threads: {values['throughput']:7.1f} img/s  p50 {values['p50']:.1f} ms")
    print("  (each served run below is compared with a 2x1 limit measured just before it)")
    stack = "production settings, PostgreSQL, Redis, API key, throttle, quota, audit row"
    print(f"\nServed ({report['body']} bodies; {stack}):")
    header = ["req/s", "ratio", "p50 ms", "p95 ms", "p99 ms", "non-2xx"]  # ratio: served / limit
    print(f"  {'server':<13}{'conc':>5}" + "".join(f"{h:>9}" for h in header))
    for server, results in report["servers"].items():
        for concurrency, r in results.items():
            if concurrency == "tiny-1":
                continue
            print(
                f"  {server:<13}{concurrency:>5}{r['throughput']:>9.1f}{r['ratio']:>9.2f}"
                f"{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}{r['non2xx']:>9.0f}"
            )
    base = report["tiny_in_process_p50"]
    print(f"\nPlatform overhead (tiny model, concurrency 1; in-process p50 {base:.2f} ms):")
    for server, results in report["servers"].items():
        tiny = results["tiny-1"]
        print(f"  {server:<13} p50 {tiny['p50']:.2f} ms  overhead {tiny['p50'] - base:.2f} ms")
    print(f"\nAudit rows written: {report['audit_rows']}")


if __name__ == "__main__":
    main()
