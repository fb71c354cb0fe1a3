"""Batch jobs end to end, on PostgreSQL, a Redis of the test's own and real worker processes.

Nothing lost, nothing twice: a worker killed with SIGKILL mid-job, Redis stopped while
jobs are submitted, a running job cancelled, one Idempotency-Key sent at the same
moment from several clients. The test starts its own redis-server (so it can stop it
without disturbing anything else) and needs PostgreSQL (DATABASE_URL), as in CI.
"""

import hashlib
import hmac
import io
import json
import os
import signal
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings
from standardwebhooks import Webhook

from tests import live
from tests.live import BIN, DEMO, ROOT, free_port, wait_for

PHOTOS = sorted((ROOT / "demo" / "images").glob("*.jpg"))
BATCH = 16
LEASE_SECONDS = 6

pytestmark = [pytest.mark.e2e, *live.requires(postgres=True, redis_server=True)]


@pytest.fixture(scope="module")
def jobs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("jobs-e2e")
    redis_server = live.RedisServer(workdir)
    redis_server.start()
    with live.postgres_database("mlplatform_jobs_e2e") as database_url:
        try:
            yield from _jobs_stack(workdir, redis_server, database_url)
        finally:
            redis_server.kill()


def _jobs_stack(workdir: Path, redis_server: live.RedisServer, database_url: str) -> Iterator[dict]:
    """The web server, beat and one worker (more on request), each in a process group of its
    own, so that a test can kill a worker with its pool child, as if its machine died."""
    worker_metrics_port = free_port()
    env = live.production_env(
        workdir,
        database_url,
        "jobs-e2e",
        REDIS_URL=redis_server.url,
        CELERY_BEAT_SCHEDULE_FILENAME=str(workdir / "beat-schedule"),
        THROTTLE_RATE_JOBS="100000/min",
        MONTHLY_PREDICTION_QUOTA="1000000",
        JOB_BATCH_SIZE=str(BATCH),
        JOB_LEASE_SECONDS=str(LEASE_SECONDS),
        JOB_HEARTBEAT_SECONDS="1.5",
        JOB_RECONCILE_INTERVAL_SECONDS="2",
        JOB_QUEUED_GRACE_SECONDS="4",
        WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOK_RETRY_BASE_SECONDS="1",
    )
    live.migrate(env, quiet=True)
    live.collectstatic(env, quiet=True)
    live.create_users(env, ["e2e"], "pw", superuser=True, quiet=True)
    register = ["register_model", "--name", "effnet", "--file", str(DEMO / "model.onnx")]
    register += ["--labels", str(DEMO / "labels.txt"), "--preprocessing", str(DEMO / "preprocessing.json")]
    live.manage(env, *register, "--alias", "production", quiet=True)
    scopes = ["predict", "jobs", "models:read", "models:write"]
    key = live.manage(env, "create_api_key", "e2e", "--name", "e2e", "--scopes", *scopes, quiet=True).strip()
    processes: dict[str, live.Live] = {}
    options = {"append": True, "own_group": True}

    def start_worker(name: str) -> live.Live:
        processes[name] = live.start_worker(
            {**env, "WORKER_METRICS_PORT": str(worker_metrics_port)},
            workdir / f"{name}.log",
            "jobs,default,validation",
            hostname=f"{name}@%h",
            **options,
        )
        return processes[name]

    web = processes["web"] = live.start_web(env, workdir / "web.log", threads=4, config=True, **options)
    beat = [str(BIN / "celery"), "-A", "mlplatform", "beat", "--loglevel", "INFO"]
    processes["beat"] = live.spawn(beat, env, workdir / "beat.log", **options)
    start_worker("worker1")
    http = requests.Session()
    http.headers["X-API-Key"] = key
    stack = {
        "url": web.url,
        "http": http,
        "key": key,
        "redis": redis_server,
        "database_url": database_url,
        "workdir": workdir,
        "start_worker": start_worker,
        "processes": processes,
        "worker_metrics": f"http://127.0.0.1:{worker_metrics_port}/metrics",
    }
    try:
        web.wait_ready("the web server")
        yield stack
    finally:
        live.stop(*processes.values())


def _zip_of_photos(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            photo = PHOTOS[index % len(PHOTOS)]
            archive.writestr(f"{index:04d}-{photo.name}", photo.read_bytes())
    return buffer.getvalue()


def submit_archive(stack: dict, count: int, **fields) -> dict:
    response = stack["http"].post(
        f"{stack['url']}/api/v1/jobs/",
        data={"model": "effnet", **fields},
        files={"archive": ("photos.zip", _zip_of_photos(count), "application/zip")},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json()


def job(stack: dict, job_id: str) -> dict:
    return stack["http"].get(f"{stack['url']}/api/v1/jobs/{job_id}/", timeout=10).json()


def finished(stack: dict, job_id: str) -> dict | None:
    body = job(stack, job_id)
    return body if body["status"] in ("succeeded", "failed", "cancelled") else None


def query(stack: dict, sql: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack["database_url"]) as conn:
        return conn.execute(sql, params).fetchall()


def show_logs(stack: dict) -> None:
    for log in sorted(stack["workdir"].glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-4000:]}")


def assert_exactly_once(stack: dict, job_id: str, total: int) -> None:
    lines = stack["http"].get(
        f"{stack['url']}/api/v1/jobs/{job_id}/results/", params={"download": "jsonl"}, timeout=60
    )
    indices = [json.loads(line)["index"] for line in lines.text.splitlines()]
    assert sorted(indices) == list(range(total))
    [(items, pending, audited, distinct)] = query(
        stack,
        """SELECT count(*), count(*) FILTER (WHERE i.status = 'pending'),
                  (SELECT count(*) FROM inference_prediction p JOIN jobs_jobitem j ON p.job_item_id = j.id
                    WHERE j.job_id = %s),
                  (SELECT count(DISTINCT p.job_item_id) FROM inference_prediction p
                    JOIN jobs_jobitem j ON p.job_item_id = j.id WHERE j.job_id = %s)
             FROM jobs_jobitem i WHERE i.job_id = %s""",
        job_id,
        job_id,
        job_id,
    )
    assert (items, pending, audited, distinct) == (total, 0, total, total)


def test_a_worker_killed_mid_job_costs_a_delay_not_a_result(jobs_stack: dict) -> None:
    stack = jobs_stack
    submitted = submit_archive(stack, 500)
    job_id = submitted["id"]
    try:
        wait_for(lambda: job(stack, job_id)["progress"]["done"] >= 3 * BATCH, 120, "the job to make progress")
    except AssertionError:
        show_logs(stack)
        raise
    worker = stack["processes"]["worker1"]
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool child, as if the machine died
    worker.process.wait()
    killed_at = job(stack, job_id)
    assert killed_at["status"] == "running"
    assert killed_at["progress"]["done"] < 500

    stack["start_worker"]("worker2")
    try:
        # The broker would redeliver the lost message only after its visibility timeout
        # (hours); the reconciler hands the job on once the lease expires (seconds).
        done = wait_for(lambda: finished(stack, job_id), 60, "the job to finish on the new worker")
    except AssertionError:
        show_logs(stack)
        raise
    assert done["status"] == "succeeded", done
    assert done["progress"]["done"] == 500
    assert done["attempts"] == 2
    assert_exactly_once(stack, job_id, 500)


def test_jobs_accepted_while_redis_is_down_all_complete(jobs_stack: dict) -> None:
    stack = jobs_stack
    accepted: list[str] = []
    statuses: list[int] = []
    accepted_while_down: list[str] = []
    stop = threading.Event()
    down = threading.Event()

    def submit_continuously() -> None:
        photo = PHOTOS[0].read_bytes()
        while not stop.is_set():
            try:
                response = stack["http"].post(
                    f"{stack['url']}/api/v1/jobs/",
                    data={"model": "effnet"},
                    files=[("inputs", (f"{i}.jpg", photo, "image/jpeg")) for i in range(3)],
                    timeout=30,
                )
            except requests.RequestException:
                statuses.append(0)
                continue
            statuses.append(response.status_code)
            if response.status_code == 202:
                accepted.append(response.json()["id"])
                if down.is_set():
                    accepted_while_down.append(response.json()["id"])

    submitter = threading.Thread(target=submit_continuously)
    submitter.start()
    try:
        wait_for(lambda: len(accepted) >= 3, 30, "submissions before the outage")
        stack["redis"].kill()
        down.set()
        wait_for(lambda: len(accepted_while_down) >= 3, 30, "submissions during the outage")
        down.clear()
        stack["redis"].start()
        count = len(accepted)
        wait_for(lambda: len(accepted) >= count + 3, 30, "submissions after the outage")
    finally:
        stop.set()
        submitter.join()
    try:
        for job_id in accepted:
            done = wait_for(lambda job_id=job_id: finished(stack, job_id), 90, f"job {job_id} to finish")
            assert done["status"] == "succeeded", done
            assert done["progress"]["done"] == 3
    except AssertionError:
        show_logs(stack)
        raise
    assert accepted_while_down, statuses


def test_a_cancelled_job_stops_within_one_batch_and_keeps_its_results(jobs_stack: dict) -> None:
    stack = jobs_stack
    job_id = submit_archive(stack, 300)["id"]
    wait_for(lambda: job(stack, job_id)["progress"]["done"] >= BATCH, 60, "the job to make progress")
    response = stack["http"].post(f"{stack['url']}/api/v1/jobs/{job_id}/cancel/", timeout=10)
    assert response.status_code in (200, 202), response.text
    done = wait_for(lambda: finished(stack, job_id), 60, "the job to stop")
    assert done["status"] == "cancelled"
    assert BATCH <= done["progress"]["done"] < 300
    [(after_cancel, with_results, audited)] = query(
        stack,
        """SELECT count(*) FILTER (WHERE i.finished_at > j.cancel_requested_at),
                  count(*) FILTER (WHERE i.status <> 'pending'),
                  (SELECT count(*) FROM inference_prediction p JOIN jobs_jobitem x ON p.job_item_id = x.id
                    WHERE x.job_id = j.id)
             FROM jobs_jobitem i JOIN jobs_batchjob j ON i.job_id = j.id WHERE j.id = %s GROUP BY j.id""",
        job_id,
    )
    assert after_cancel <= BATCH  # only the batch in hand when the cancel came
    assert with_results == audited == done["progress"]["done"]
    results = stack["http"].get(f"{stack['url']}/api/v1/jobs/{job_id}/results/", timeout=10).json()
    assert results["results"][0]["status"] == "succeeded"


def test_one_idempotency_key_sent_at_the_same_moment_makes_one_job(jobs_stack: dict) -> None:
    stack = jobs_stack
    key = f"at-once-{uuid.uuid4().hex}"
    barrier = threading.Barrier(6)
    answers: list[tuple[int, str]] = []
    photo = PHOTOS[1].read_bytes()

    def send() -> None:
        session = requests.Session()
        session.headers.update({"X-API-Key": stack["key"], "Idempotency-Key": key})
        barrier.wait()
        response = session.post(
            f"{stack['url']}/api/v1/jobs/",
            data={"model": "effnet"},
            files={"inputs": ("a.jpg", photo, "image/jpeg")},
            timeout=30,
        )
        answer = response.json()
        answers.append((response.status_code, answer.get("id") or answer.get("error", {}).get("code", "")))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One creates the job; the others answer with it (200) or, while the first is still being
    # processed, 409 idempotency_key_in_use (draft-ietf-httpapi-idempotency-key-header).
    assert [code for code, _ in answers].count(202) == 1, answers
    assert {code for code, _ in answers} <= {200, 202, 409}, answers
    assert len({job_id for code, job_id in answers if code != 409}) == 1, answers
    assert {found for code, found in answers if code == 409} <= {"idempotency_key_in_use"}, answers
    assert query(stack, "SELECT count(*) FROM jobs_batchjob WHERE idempotency_key = %s", key) == [(1,)]


def test_a_finished_job_calls_its_webhook_with_a_signature(jobs_stack: dict) -> None:
    stack = jobs_stack
    received: list[tuple[dict, bytes]] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(500 if len(received) == 1 else 204)  # the first attempt fails
            self.end_headers()
            if len(received) == 2:
                arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        job_id = submit_archive(stack, 2, webhook_url=hook)["id"]
        assert arrived.wait(90), "the webhook did not arrive twice (a failure, then a retry)"
    finally:
        server.shutdown()
    shown = stack["http"].get(f"{stack['url']}/api/v1/me/webhook-secret/", timeout=10).json()
    headers, body = received[1]
    # Standard Webhooks, checked by the stock verifier; the retry repeats the webhook-id.
    assert Webhook(shown["secret"]).verify(body, dict(headers.items()))
    assert headers["webhook-id"] == received[0][0]["webhook-id"]
    # The legacy header, as receivers from before the switch verify it.
    fields = dict(part.split("=", 1) for part in headers["X-MLPlatform-Signature"].split(","))
    legacy_key = shown["legacy_secret"].encode()
    expected = hmac.new(legacy_key, f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(int(fields["t"]) - time.time()) < 300
    payload = json.loads(body)
    assert (payload["event"], payload["job"]["id"], payload["job"]["status"]) == (
        "job.finished",
        job_id,
        "succeeded",
    )
    deliveries = stack["http"].get(f"{stack['url']}/api/v1/jobs/{job_id}/webhooks/", timeout=10).json()
    assert [(d["attempt"], d["status_code"], d["succeeded"]) for d in deliveries["results"]] == [
        (1, 500, False),
        (2, 204, True),
    ]


def test_the_command_line_client_submits_a_folder_and_downloads_results(
    jobs_stack: dict, tmp_path: Path
) -> None:
    stack = jobs_stack
    out = tmp_path / "results.jsonl"
    result = subprocess.run(
        [
            str(BIN / "mlp"),
            "--url",
            stack["url"],
            "--key",
            stack["key"],
            "jobs",
            "submit",
            str(ROOT / "demo" / "images"),
            "--model",
            "effnet",
            "--top-k",
            "1",
            "--poll-interval",
            "0.2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["filename"] for line in lines] == [p.name for p in PHOTOS]
    coffee = next(line for line in lines if line["filename"] == "coffee.jpg")
    assert coffee["output"]["top_k"][0]["label"] == "espresso"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def declared(url: str) -> set[str]:
    """The sample names a process exports or has declared: a labelled metric with no sample
    yet (no rollout has answered) is still named by its family."""
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = set()
    for family in text_string_to_metric_families(response.text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    return names


def rollout_metric_names() -> set[str]:
    from apps.rollouts import metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    return {
        family.name + suffix
        for metric in (
            metrics.ROLLOUT_PREDICTIONS,
            metrics.ROLLOUT_LATENCY,
            metrics.SHADOW_PAIRS,
            metrics.SHADOW_DROPPED,
        )
        for family in metric.describe()
        for suffix in suffixes.get(family.type, [""])
    }


def test_metrics_match_what_happened(jobs_stack: dict) -> None:
    """Web and worker metrics (each process counted) move by exactly what a prediction and a job did."""
    stack = jobs_stack
    web, worker = f"{stack['url']}/metrics", stack["worker_metrics"]
    before_web, before_worker = scrape(web), scrape(worker)
    predicted = stack["http"].post(
        f"{stack['url']}/api/v1/models/effnet/predict",
        files={"image": ("coffee.jpg", (ROOT / "demo" / "images" / "coffee.jpg").read_bytes(), "image/jpeg")},
        timeout=30,
    )
    assert predicted.status_code == 200, predicted.text
    job_id = submit_archive(stack, 3)["id"]
    assert wait_for(lambda: finished(stack, job_id), 60, "the job")["status"] == "succeeded"
    # The worker counts on commit, then finishes; give its exporter the final state.
    after_web = scrape(web)
    after_worker = wait_for(
        lambda: (
            lambda m: (
                m
                if _get(m, "mlplatform_jobs_total", status="succeeded")
                > _get(before_worker, "mlplatform_jobs_total", status="succeeded")
                else None
            )
        )(scrape(worker)),
        10,
        "the worker's metrics",
    )

    def delta(after: dict, before: dict, name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    effnet = {"model": "effnet", "version": "1"}
    sync = {**effnet, "source": "sync", "status": "succeeded"}
    assert delta(after_web, before_web, "mlplatform_predictions_total", **sync) == 1
    assert delta(after_web, before_web, "mlplatform_inference_seconds_count", **effnet, stage="infer") == 1
    assert delta(after_web, before_web, "mlplatform_batch_size_count", source="sync") == 1
    assert delta(after_web, before_web, "mlplatform_jobs_total", status="submitted") == 1
    assert _get(after_web, "mlplatform_model_sessions_loaded") >= 1
    assert {labels for name, labels in after_web if name == "mlplatform_queue_depth"} == {
        (("queue", q),) for q in settings.CELERY_QUEUES_MONITORED
    }
    job = {**effnet, "source": "job", "status": "succeeded"}
    assert delta(after_worker, before_worker, "mlplatform_predictions_total", **job) == 3
    assert delta(after_worker, before_worker, "mlplatform_job_items_total", status="succeeded") == 3
    assert delta(after_worker, before_worker, "mlplatform_jobs_total", status="succeeded") == 1
    assert delta(after_worker, before_worker, "mlplatform_batch_size_sum", source="job") == 3
    assert _get(after_worker, "mlplatform_model_load_seconds_count") >= 1
    assert any(name.startswith("django_http_requests_total") for name, _ in after_web)
    assert any(name.startswith("django_db_execute_total") for name, _ in after_web)


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_log_lines_are_json_with_request_ids(jobs_stack: dict) -> None:
    stack = jobs_stack
    response = stack["http"].post(
        f"{stack['url']}/api/v1/jobs/",
        data={"model": "effnet"},
        files={"inputs": ("a.jpg", PHOTOS[0].read_bytes(), "image/jpeg")},
        headers={"X-Request-ID": "e2e-logs-1"},
        timeout=30,
    )
    assert response.status_code == 202
    wait_for(lambda: finished(stack, response.json()["id"]), 60, "the job")

    def lines(name: str) -> list[dict]:
        parsed = []
        for line in (stack["workdir"] / f"{name}.log").read_text().splitlines():
            if line.startswith("{"):
                parsed.append(json.loads(line))
        return parsed

    request_line = next(
        line
        for line in lines("web")
        if line.get("logger") == "mlplatform.request" and line["request_id"] == "e2e-logs-1"
    )
    assert (request_line["status"], request_line["model"], request_line["version"]) == (202, "effnet", 1)
    assert request_line["latency_ms"] > 0 and request_line["user_id"]
    worker_lines = [
        line
        for name in ("worker1", "worker2")
        if (stack["workdir"] / f"{name}.log").exists()
        for line in lines(name)
    ]
    assert any(line["request_id"] == "e2e-logs-1" and "succeeded" in line["message"] for line in worker_lines)


def test_every_dashboard_query_names_a_metric_the_platform_exports(jobs_stack: dict) -> None:
    from tests.deploy.test_deploy_config import dashboard_metric_names

    stack = jobs_stack
    exported = declared(f"{stack['url']}/metrics") | declared(stack["worker_metrics"])
    # Multiprocess metrics have no sample, so no name on /metrics, until a labelled child is
    # written: the rollout panels' metrics appear once a rollout answers (this stack runs none;
    # tests/rollouts/test_shadow.py checks their values).
    exported |= rollout_metric_names()
    missing = dashboard_metric_names() - exported
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_a_version_is_quantized_on_a_worker_and_gated_on_accuracy(jobs_stack: dict) -> None:
    stack = jobs_stack
    http, url = stack["http"], stack["url"]
    with (DEMO / "eval-set.zip").open("rb") as data:
        created = http.post(
            f"{url}/api/v1/models/effnet/evaluation-sets/",
            data={"name": "photos"},
            files={"file": ("eval-set.zip", data, "application/zip")},
            timeout=60,
        )
    assert created.status_code == 201, created.text
    items = created.json()["summary"]["items"]
    assert items >= 200  # the demo set: 214 views of 6 photos (demo/efficientnet_lite0/eval-set.md)
    response = http.post(
        f"{url}/api/v1/models/effnet/versions/1/optimize",
        json={
            "recipe": "static-int8",
            "calibration_set": "photos",
            "calibration_size": 32,  # enough to calibrate; keeps the run short
            "evaluation_set": "photos",
            "max_top1_drop": 50,
        },
        timeout=30,
    )
    assert response.status_code == 202, response.text

    def finished_run() -> dict | None:
        body = http.get(f"{url}{response.headers['Location']}", timeout=10).json()
        return body if body["status"] in ("succeeded", "failed") else None

    try:
        run = wait_for(finished_run, 180, "the optimization to finish")
    except AssertionError:
        show_logs(stack)
        raise
    assert run["status"] == "succeeded", run["error"]
    report = run["report"]
    assert 0.2 < report["size_ratio"] < 0.35  # int8 weights: about a quarter of fp32
    assert report["accuracy"]["items"] == items and report["gate"]["passed"] is True
    version = http.get(f"{url}/api/v1/models/effnet/versions/{run['result_version']}/", timeout=10).json()
    assert (version["status"], version["derived_from"]) == ("ready", 1)
    predicted = http.post(
        f"{url}/api/v1/models/effnet/predict",
        params={"version": version["version"]},
        files={"image": ("coffee.jpg", (ROOT / "demo" / "images" / "coffee.jpg").read_bytes(), "image/jpeg")},
        timeout=30,
    )
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"][0]["top_k"][0]["label"] == "espresso"
