"""Batch-job benchmark: job throughput against raw ONNX Runtime batched throughput, in one run.

    .venv/bin/python bench/jobs.py [--images 2000] [--repeat 1] [--workers 1,2]

What it measures: images per second of a batch job of the demo EfficientNet-Lite0, with
1 and 2 Celery worker processes, as a ratio of the raw batched throughput of the same
images measured in the same run (the machines are noisy, so only ratios between
neighbouring measurements mean anything). Target: at least 0.9 with one worker process.

1. Creates a scratch PostgreSQL database (DATABASE_URL's server, default
   postgres://postgres@127.0.0.1:5432), migrates, registers the demo model and creates
   an API key with the `jobs` scope. Redis (REDIS_URL's server, default 127.0.0.1:6379)
   is used on database 9 for the broker and the cache: the Celery queues (`jobs`,
   `default`) are named by the settings, so a unique cache prefix would not keep them
   apart from other runs on database 0. Nothing is flushed; only this run's cache keys
   are deleted at the end. Two runs of this benchmark at the same time would share the
   queues on database 9: do not.
2. Raw (no HTTP, no database, no Celery): the platform's own decode_image, image_to_array
   and load_model with ORT_INTRA_OP_THREADS intra-op threads, the same images (the demo
   photos cycled) in batches of JOB_BATCH_SIZE, one model call per batch, in a spawned
   process; and in 2 processes of half the images each (timed from a common barrier).
   A raw measurement is taken right before each served run.
3. Served: one gunicorn (1 worker) takes the submissions; N Celery worker processes
   (`--queues jobs,default --concurrency 1` each, no beat) run them, with the production
   settings (leases, progress writes, one audit Prediction row per item).
   - 1 worker: one job of all the images, uploaded as one zip. Job throughput is
     images / (finished_at - started_at) as the job reports it, so the upload is not in
     it (started_at is the worker's claim); the wall time from the start of the upload to
     the poll that saw the job finished is reported as well.
   - 2 workers: a job is one Celery task, run by one worker from start to end, so one
     job cannot use two workers. Two jobs of half the images each are submitted instead,
     with the workers' `jobs` consumers paused (celery control cancel_consumer) until both
     are uploaded, then resumed at once (add_consumer), so each worker takes one job and
     neither waits for the other's upload. Throughput is
     images / (last finished_at - first started_at).
   Before measuring, each worker runs a small warm-up job (the model is loaded on a
   worker's first job; workers do not preload it). No beat runs, so a job whose worker
   died would never finish: a run with no progress for STALL_SECONDS fails and prints
   the processes' logs.

Prints a table and writes bench/results/jobs-<time>.json.
"""

import argparse
import datetime as dt
import io
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from common import CREATE_SUPERUSER, manage, register_demo  # bench/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "demo" / "images").glob("*.jpg"))
DEMO = ROOT / "demo" / "efficientnet_lite0"
BIN = Path(sys.executable).parent
MAX_PIXELS = 40_000_000  # settings.MAX_IMAGE_PIXELS's default, as the worker passes it
# The worker's settings (mlplatform/settings/base.py), read the same way, and passed to the
# served stack explicitly so the raw measurement and the workers agree.
INTRA_OP_THREADS = int(os.environ.get("ORT_INTRA_OP_THREADS", "1"))
BATCH_SIZE = int(os.environ.get("JOB_BATCH_SIZE", "32"))
REDIS_DB = 9
FINISHED = ("succeeded", "failed", "cancelled")
STALL_SECONDS = 90  # no job's status or progress changed for this long: something is wrong


# --- Raw ONNX Runtime -----------------------------------------------------------------------------


def _raw_worker(
    count: int, batch: int, threads: int, model_path: str, preprocessing: dict, barrier: Any, result: Any
) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from apps.inference.preprocessing import decode_image, image_to_array
    from apps.inference.runtime import RuntimeConfig, load_model

    model = load_model((0, ""), Path(model_path), RuntimeConfig(intra_op_threads=threads))
    photos = [p.read_bytes() for p in PHOTOS]
    name = model.input_names[0]

    def run_batch(first: int) -> None:
        arrays = [
            image_to_array(
                decode_image(photos[i % len(photos)], max_pixels=MAX_PIXELS).image,
                preprocessing,
                max_pixels=MAX_PIXELS,
            )
            for i in range(first, min(count, first + batch))
        ]
        model.run({name: np.stack(arrays)})

    run_batch(0)  # untimed: the served workers are warm too (a warm-up job each)
    barrier.wait()
    started = time.time()
    for first in range(0, count, batch):
        run_batch(first)
    result.put((count, started, time.time()))


def raw_throughput(processes: int, images: int, preprocessing: dict) -> dict[str, float]:
    """Images per second of `processes` spawned processes sharing `images`, from a common start."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    barrier = context.Barrier(processes)
    shares = [images // processes + (1 if i < images % processes else 0) for i in range(processes)]
    workers = [
        context.Process(
            target=_raw_worker,
            args=(
                share,
                BATCH_SIZE,
                INTRA_OP_THREADS,
                str(DEMO / "model.onnx"),
                preprocessing,
                barrier,
                queue,
            ),
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=1800) for _ in workers]
    for worker in workers:
        worker.join()
    seconds = max(end for _, _, end in results) - min(start for _, start, _ in results)
    return {"throughput": sum(count for count, _, _ in results) / seconds, "seconds": seconds}


# --- The served stack -----------------------------------------------------------------------------


class Stack:
    """A scratch database, one gunicorn and N Celery worker processes, with production settings."""

    def __init__(self, workdir: Path, images: int) -> None:
        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        redis_base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.workdir = workdir
        self.db_name = f"mlp_bench_jobs_{uuid.uuid4().hex[:8]}"
        self.admin_url = urlunsplit(urlsplit(base)._replace(path="/postgres"))
        self.database_url = urlunsplit(urlsplit(base)._replace(path=f"/{self.db_name}"))
        self.redis_url = urlunsplit(urlsplit(redis_base)._replace(path=f"/{REDIS_DB}"))
        self.cache_prefix = f"bench-jobs-{uuid.uuid4().hex[:8]}"
        self.tag = uuid.uuid4().hex[:6]
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mlplatform.settings.production",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "False",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CACHE_KEY_PREFIX": self.cache_prefix,
            "MODEL_STORE_ROOT": str(workdir / "store"),
            "STATIC_ROOT": str(workdir / "static"),
            "CELERY_BEAT_SCHEDULE_FILENAME": str(workdir / "beat-schedule"),
            "THROTTLE_RATE_JOBS": "100000/min",
            "MONTHLY_PREDICTION_QUOTA": "1000000000",
            "LOG_LEVEL": "WARNING",
            "JOB_MAX_ITEMS": str(max(images, 10_000)),
            "JOB_BATCH_SIZE": str(BATCH_SIZE),
            "ORT_INTRA_OP_THREADS": str(INTRA_OP_THREADS),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("CELERY_BROKER_URL", None)
        self.env.pop("CACHE_URL", None)
        self.url = ""
        self.key = ""
        self.processes: list[subprocess.Popen] = []
        self._logs: list[Any] = []
        self._control: Any = None

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    def set_up(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.manage("migrate", "--noinput", "-v0")
        self.manage(*CREATE_SUPERUSER)
        self.manage(*register_demo())
        self.key = self.manage("create_api_key", "bench", "--name", "bench", "--scopes", "jobs").strip()

    def tear_down(self) -> None:
        import psycopg
        import redis

        self.stop(self.processes)
        for log in self._logs:
            log.close()
        try:
            client = redis.Redis.from_url(self.redis_url)
            for key in client.scan_iter(match=f"{self.cache_prefix}:*", count=1000):
                client.delete(key)
        except redis.RedisError:
            pass
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("a")
        self._logs.append(log)
        # Each process's Prometheus folder in the workdir (else each start leaves one in /tmp).
        metrics = self.workdir / f"metrics-{name}"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir()
        process = subprocess.Popen(
            command,
            env={**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_web(self, port: int) -> None:
        self._spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "mlplatform.wsgi",
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "2",
            ],
        )
        self.url = f"http://127.0.0.1:{port}"
        _wait(lambda: _answers(f"{self.url}/readyz"), 60, "gunicorn")

    def start_workers(self, count: int) -> tuple[list[subprocess.Popen], list[str]]:
        """`count` Celery worker processes (concurrency 1 each), ready to take jobs."""
        names = [f"w{i}-{self.tag}@{socket.gethostname()}" for i in range(1, count + 1)]
        processes = [
            self._spawn(
                name.split("@")[0],
                [
                    str(BIN / "celery"),
                    "-A",
                    "mlplatform",
                    "worker",
                    "--queues",
                    "jobs,default",
                    "--concurrency",
                    "1",
                    "--hostname",
                    name,
                    "--loglevel",
                    "WARNING",
                ],
            )
            for name in names
        ]

        def all_ready() -> bool:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a worker exited; see {self.workdir}/w*.log")
            replies = self.control().ping(destination=names, timeout=1.0) or []
            return {name for reply in replies for name in reply} == set(names)

        _wait(all_ready, 90, "the Celery workers")
        return processes, names

    def stop(self, processes: list[subprocess.Popen]) -> None:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def control(self) -> Any:
        """Celery's remote control on this run's broker (only ever sent to this run's workers)."""
        if self._control is None:
            from celery import Celery

            self._control = Celery("bench-jobs-control", broker=self.redis_url).control
        return self._control

    def consume_jobs(self, names: list[str], on: bool) -> None:
        command = self.control().add_consumer if on else self.control().cancel_consumer
        replies = command("jobs", destination=names, reply=True, timeout=5.0) or []
        answered = {name for reply in replies for name in reply}
        if answered != set(names):
            raise RuntimeError(f"{'add' if on else 'cancel'}_consumer: replies from {sorted(answered)}")

    def submit(self, archive: bytes) -> str:
        response = requests.post(
            f"{self.url}/api/v1/jobs/",
            headers={"X-API-Key": self.key},
            data={"model": "effnet"},
            files={"archive": ("photos.zip", archive, "application/zip")},
            timeout=600,
        )
        if response.status_code != 202:
            raise RuntimeError(f"submit: {response.status_code} {response.text[:500]}")
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        response = requests.get(
            f"{self.url}/api/v1/jobs/{job_id}/", headers={"X-API-Key": self.key}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def workers_of(self, job_ids: list[str]) -> list[str]:
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT worker FROM jobs_batchjob WHERE id = ANY(%s::uuid[])", (job_ids,)
            ).fetchall()
        return sorted(row[0] for row in rows)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _wait(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}")


def zip_of_photos(count: int) -> bytes:
    """The demo photos cycled, `count` of them, in one stored (uncompressed) zip."""
    photos = [p.read_bytes() for p in PHOTOS]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"{index:05d}-{PHOTOS[index % len(PHOTOS)].name}", photos[index % len(photos)])
    return buffer.getvalue()


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def run_jobs(stack: Stack, names: list[str], archives: list[bytes], timeout: float) -> dict[str, Any]:
    """Submit one job per archive (consumers paused when there is more than one) and wait
    for all; throughput from the jobs' own started_at / finished_at."""
    paused = len(archives) > 1
    if paused:
        stack.consume_jobs(names, on=False)
    submitted = time.monotonic()
    try:
        ids = [stack.submit(archive) for archive in archives]
    finally:
        if paused:
            stack.consume_jobs(names, on=True)
    uploaded = time.monotonic() - submitted
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple] = {}
    moved = time.monotonic()
    while len(done) < len(ids):
        # No beat runs here, so a job whose worker died would stay `running`: give up early.
        if time.monotonic() > deadline or time.monotonic() - moved > STALL_SECONDS:
            raise RuntimeError(f"jobs not finished (or stalled): {[stack.job(i) for i in ids]}")
        time.sleep(0.25)
        for job_id in ids:
            if job_id not in done:
                body = stack.job(job_id)
                state = (body["status"], body["progress"]["done"])
                if seen.get(job_id) != state:
                    seen[job_id], moved = state, time.monotonic()
                if body["status"] in FINISHED:
                    done[job_id] = body
    wall = time.monotonic() - submitted
    bodies = [done[i] for i in ids]
    for body in bodies:
        progress = body["progress"]
        if body["status"] != "succeeded" or progress["failed"] or progress["done"] != progress["total"]:
            raise RuntimeError(f"job did not succeed cleanly: {body}")
    images = sum(body["progress"]["total"] for body in bodies)
    first = min(_time(body["started_at"]) for body in bodies)
    last = max(_time(body["finished_at"]) for body in bodies)
    seconds = (last - first).total_seconds()
    return {
        "images": images,
        "throughput": images / seconds,
        "seconds": seconds,
        "wall_seconds": wall,
        "upload_seconds": uploaded,
        "start_gap_seconds": (max(_time(b["started_at"]) for b in bodies) - first).total_seconds(),
        "jobs": [
            {
                "id": body["id"],
                "images": body["progress"]["total"],
                "duration_seconds": body["duration_seconds"],
                "items_per_second": body["progress"]["items_per_second"],
                "attempts": body["attempts"],
            }
            for body in bodies
        ],
        "workers": stack.workers_of(ids),
    }


def warm_up(stack: Stack, names: list[str]) -> list[str]:
    """One small job per worker, so each has loaded the model before it is measured."""
    result = run_jobs(stack, names, [zip_of_photos(2 * BATCH_SIZE)] * len(names), 120)
    return result["workers"]


# --- Main ------------------------------------------------------------------------------------------


def _median(runs: list[dict]) -> dict[str, float]:
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {key: statistics.median(run[key] for run in runs) for key in numeric}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000, help="images per measurement (default 2000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; medians are reported")
    parser.add_argument("--workers", default="1,2", help="worker-process counts to measure (default 1,2)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    preprocessing = json.loads((DEMO / "preprocessing.json").read_text())
    workdir = Path(tempfile.mkdtemp(prefix="mlp-bench-jobs-"))
    stack = Stack(workdir, args.images)
    report: dict[str, Any] = {
        "images": args.images,
        "repeat": args.repeat,
        "batch_size": BATCH_SIZE,
        "intra_op_threads": INTRA_OP_THREADS,
        "cpus": os.cpu_count(),
        "served": {},
    }
    timeout = max(600.0, args.images / 2)
    try:
        stack.set_up()
        stack.start_web(18000 + os.getpid() % 1000)
        for count in counts:
            shares = [args.images // count + (1 if i < args.images % count else 0) for i in range(count)]
            archives = {share: zip_of_photos(share) for share in set(shares)}
            processes, names = stack.start_workers(count)
            try:
                warmed = warm_up(stack, names)
                runs = []
                for _ in range(args.repeat):
                    # Raw right before served: the machine's speed drifts within minutes.
                    raw = {"raw_1": raw_throughput(1, args.images, preprocessing)["throughput"]}
                    if count > 1:
                        raw[f"raw_{count}"] = raw_throughput(count, args.images, preprocessing)["throughput"]
                    served = run_jobs(stack, names, [archives[s] for s in shares], timeout)
                    if count > 1 and len(set(served["workers"])) != count:
                        print(f"warning: the jobs ran on {served['workers']}, not on {count} workers")
                    ratios = {f"ratio_{k}": served["throughput"] / v for k, v in raw.items()}
                    runs.append({**raw, **served, **ratios})
                report["served"][str(count)] = {**_median(runs), "warm_up_workers": warmed, "runs": runs}
            finally:
                stack.stop(processes)
                stack.processes = [p for p in stack.processes if p not in processes]
    except BaseException:
        for log in sorted(workdir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        stack.tear_down()
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"jobs-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2))


def print_report(report: dict[str, Any]) -> None:
    images, batch = report["images"], report["batch_size"]
    print(
        f"\nRaw ONNX Runtime (decode + preprocess + infer, {images} images in batches of {batch}, "
        f"{report['intra_op_threads']} intra-op thread(s), {report['cpus']} CPUs; "
        f"medians of {report['repeat']}):"
    )
    for count, r in report["served"].items():
        line = f"  before the {count}-worker runs: 1 process {r['raw_1']:7.1f} img/s"
        if count != "1":
            line += f"   {count} processes {r[f'raw_{count}']:7.1f} img/s"
        print(line)
    print(
        "\nServed (gunicorn 1 worker; celery --concurrency 1 per process; "
        "production settings, PostgreSQL, Redis):"
    )
    header = ["img/s", "/raw-1", "/raw-N", "job s", "wall s", "upload s", "gap s"]
    print(f"  {'workers':<9}{'jobs':<12}" + "".join(f"{h:>10}" for h in header))
    for count, r in report["served"].items():
        n = int(count)
        jobs = f"{n}x{images // n}" if n > 1 else f"1x{images}"
        per_n = f"{r[f'ratio_raw_{n}']:>10.2f}" if n > 1 else f"{'':>10}"
        print(
            f"  {count:<9}{jobs:<12}{r['throughput']:>10.1f}{r['ratio_raw_1']:>10.2f}{per_n}"
            f"{r['seconds']:>10.1f}{r['wall_seconds']:>10.1f}{r['upload_seconds']:>10.1f}"
            f"{r['start_gap_seconds']:>10.1f}"
        )
    print(
        "  img/s = images / (last finished_at - first started_at), the span in 'job s'; wall = from the\n"
        "  start of the upload to the poll that saw the last job finished; gap = between the jobs' started_at"
    )
    if report["repeat"] > 1:
        print("  each run's ratio to the raw measurement just before it:")
        for count, r in report["served"].items():
            for key in ("ratio_raw_1", f"ratio_raw_{count}") if count != "1" else ("ratio_raw_1",):
                values = "  ".join(f"{run[key]:.2f}" for run in r["runs"])
                print(f"    {count} worker(s), /{key.removeprefix('ratio_')}: {values}")


if __name__ == "__main__":
    main()
