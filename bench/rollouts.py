"""Rollouts benchmark: what a 10% canary and a 100% shadow cost the caller, against no rollout,
in the same run.

    .venv/bin/python bench/rollouts.py [--requests 400] [--rounds 3] [--seconds 8]

1. A scratch database (bench/serving.py's Platform): the tiny model (the platform's own
   overhead shows) and the demo EfficientNet-Lite0 (real model work), each with versions 2
   (the canary) and 3 (the shadow); one Celery worker consuming only the `shadow` queue
   (concurrency 1, nice 19), so shadows really run on the cores the web leaves idle.
2. The caller's added cost, in one web process (production settings, PostgreSQL, Redis,
   API key, throttle, quota, audit, the shadow sender's thread): the predict view driven in
   process (Django's test client, the photos as raw JPEG bodies, 200 routing keys), in
   blocks of `--requests`, "off" then "on" (the rollout started and aborted through the
   services between blocks), at concurrency 1 and 4 (threads). CPU per request is the
   process's CPU time over the block (every thread: the sender's too); p50 is of each
   request's time. The client's own work is the same in both states, so the difference is
   the rollout's.
3. Throughput at concurrency 16: gunicorn (sync, 2 workers) with the demo model under wrk
   from 200 routing keys, "off" then "on", the shadow queue's length sampled every 0.2 s,
   then the rollout's drop count.

Targets (issue 16): ≤ 0.3 ms CPU and ≤ 0.5 ms p50 added at c1-4. The machine is shared and
noisy: only the differences within one round mean anything; medians over rounds print.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import register_demo  # bench/ is on sys.path when run
from cpu_cost import cpu_by_group
from serving import BIN, DEMO, PHOTOS, ROOT, SERVERS, Platform, run_wrk

SCRIPT = ROOT / "bench" / "rollouts.lua"


def set_up(platform: Platform) -> str:
    """Versions 2 and 3 of each model (the canary and the shadow): other bytes (a version's file
    is refused as a duplicate of another), the same outputs and labels."""
    import onnx

    key = platform.set_up()  # puts the repository on sys.path
    from tests.onnx_models import tiny_classifier

    folder = Path(platform.env["MODEL_STORE_ROOT"]).parent
    try:
        for number in (2, 3):
            tiny = folder / f"tiny{number}.onnx"
            tiny.write_bytes(tiny_classifier(seed=number))
            config = str(folder / "tiny.json")
            platform.manage(
                "register_model", "--name", "tiny", "--file", str(tiny), "--preprocessing", config
            )
            demo = onnx.load(DEMO / "model.onnx")
            demo.doc_string = f"bench copy {number}"
            onnx.save(demo, folder / f"effnet{number}.onnx")
            args = register_demo(alias=None)
            args[args.index("--file") + 1] = str(folder / f"effnet{number}.onnx")
            platform.manage(*args)
    except BaseException:
        platform.tear_down()
        raise
    return key


# --- in the child process: Django set up with the platform's environment ------------------------


def rollout_on(name: str) -> None:
    from apps.registry.models import MLModel
    from apps.registry.selectors import version_get
    from apps.rollouts.services import Shadow, rollout_start

    model = MLModel.objects.get(name=name)
    canary, shadow = version_get(model=model, number=2), version_get(model=model, number=3)
    rollout_start(
        model=model,
        alias_name="production",
        candidates=[(canary, 10)],
        shadow=Shadow(version=shadow, percent=100),
        user=None,
    )


def rollout_off() -> dict[str, int]:
    """Abort every active rollout; each model's drop count."""
    from apps.rollouts.models import Rollout
    from apps.rollouts.services import rollout_abort

    return {
        r.model.name: rollout_abort(rollout=r, user=None).shadow_dropped
        for r in Rollout.objects.filter(status="active").select_related("model")
    }


def block(key: str, requests: int, threads: int) -> dict:
    """`requests` predictions of the tiny model over `threads` threads: CPU and p50 per request."""
    from django.db import connections
    from django.test import Client

    bodies = [photo.read_bytes() for photo in PHOTOS]
    times: list[float] = []

    def work(offset: int) -> None:
        client = Client(HTTP_HOST="127.0.0.1", HTTP_X_API_KEY=key)
        for i in range(offset, requests, threads):
            started = time.perf_counter()
            response = client.post(
                "/api/v1/models/tiny/predict",
                bodies[i % len(bodies)],
                content_type="image/jpeg",
                HTTP_X_ROUTING_KEY=f"caller-{i % 200}",
            )
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
        connections.close_all()

    cpu = time.process_time()
    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    cpu = time.process_time() - cpu
    return {"cpu_ms": cpu * 1000 / requests, "p50_ms": statistics.median(times) * 1000}


def child(key: str, requests: int, rounds: int) -> None:
    import django

    django.setup()
    from apps.rollouts import shadowing

    block(key, 50, 1)  # warm: the model loaded, connections open
    results = []
    for _ in range(rounds):
        result: dict = {}
        for state in ("off", "on"):
            if state == "on":
                rollout_on("tiny")
            for threads in (1, 4):
                result[f"{state}/c{threads}"] = block(key, requests, threads)
            if state == "on":
                shadowing.sender.flush()
                result["dropped"] = rollout_off()["tiny"]
        results.append(result)
        print("ROUND " + json.dumps(result), file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(results), flush=True)


# --- the parent: the platform, the shadow worker, gunicorn and wrk ---------------------------------


def shadow_worker(platform: Platform) -> subprocess.Popen:
    """At the lowest CPU priority (nice 19), as a shadow pool sharing the web's machine should
    run: it takes the cores the web leaves idle, and the drop rule bounds what it falls behind."""
    command = ["nice", "-n", "19", str(BIN / "celery"), "-A", "mlplatform", "worker", "-Q", "shadow"]
    command += ["--concurrency", "1"]
    return subprocess.Popen(
        [*command, "--loglevel", "WARNING"], env=platform.env, cwd=ROOT, stdout=subprocess.DEVNULL
    )


def in_process(platform: Platform, key: str, requests: int, rounds: int) -> list[dict]:
    command = [sys.executable, __file__, "--child", key, "--requests", str(requests), "--rounds", str(rounds)]
    output = subprocess.run(command, env=platform.env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(next(line for line in output.stdout.splitlines() if line.startswith("RESULT "))[7:])


def backlog_sampler(url: str, stop: threading.Event, samples: list[int]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    while not stop.wait(0.2):
        samples.append(int(client.llen("shadow")))


def saturated(platform: Platform, key: str, seconds: float) -> dict:
    """The demo model at concurrency 16 over HTTP, off then on: req/s, web CPU, the backlog."""
    port = 18000 + os.getpid() % 1000
    web = platform.serve(SERVERS["sync-2"], port)
    manage_shell = [sys.executable, __file__, "--toggle"]
    result: dict = {}
    try:
        for state in ("off", "on"):
            if state == "on":
                subprocess.run([*manage_shell, "on"], env=platform.env, cwd=ROOT, check=True)
                time.sleep(3)  # every worker process's cache (LOCAL_CACHE_SECONDS = 2) routes anew
            stop, samples = threading.Event(), []
            sampler = threading.Thread(
                target=backlog_sampler, args=(platform.env["REDIS_URL"], stop, samples)
            )
            sampler.start()
            before = cpu_by_group(web.pid)["web"]
            run = run_wrk(
                port, "effnet", key, 16, seconds, script=SCRIPT, extra_env={"BENCH_ROUTING_KEYS": "200"}
            )
            run["web_cpu_ms"] = (cpu_by_group(web.pid)["web"] - before) * 1000 / max(1, run["requests"])
            stop.set()
            sampler.join()
            run["backlog_max"] = max(samples, default=0)
            result[state] = run
        off = subprocess.run(
            [*manage_shell, "off"], env=platform.env, cwd=ROOT, check=True, capture_output=True
        )
        result["dropped"] = json.loads(off.stdout.decode().splitlines()[-1])
    finally:
        web.terminate()
        web.wait(timeout=60)
    return result


def summary(rounds: list[dict], c16: dict) -> dict:
    def added(name: str, field: str) -> float:
        return round(statistics.median(r[f"on/{name}"][field] - r[f"off/{name}"][field] for r in rounds), 3)

    out = {}
    for name in ("c1", "c4"):
        out[name] = {
            "cpu_ms_off": round(statistics.median(r[f"off/{name}"]["cpu_ms"] for r in rounds), 3),
            "cpu_ms_added": added(name, "cpu_ms"),
            "cpu_ms_added_each_round": [
                round(r[f"on/{name}"]["cpu_ms"] - r[f"off/{name}"]["cpu_ms"], 3) for r in rounds
            ],
            "p50_ms_off": round(statistics.median(r[f"off/{name}"]["p50_ms"] for r in rounds), 3),
            "p50_ms_added": added(name, "p50_ms"),
            "p50_ms_added_each_round": [
                round(r[f"on/{name}"]["p50_ms"] - r[f"off/{name}"]["p50_ms"], 3) for r in rounds
            ],
        }
    out["dropped_in_process"] = [r["dropped"] for r in rounds]
    out["c16"] = {
        "req_s_off": round(c16["off"]["throughput"], 1),
        "req_s_on": round(c16["on"]["throughput"], 1),
        "web_cpu_ms_off": round(c16["off"]["web_cpu_ms"], 2),
        "web_cpu_ms_on": round(c16["on"]["web_cpu_ms"], 2),
        "backlog_max_on": c16["on"]["backlog_max"],
        "dropped": c16["dropped"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--child", metavar="KEY")
    parser.add_argument("--toggle", choices=["on", "off"])
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.requests, args.rounds)
    if args.toggle:
        import django

        django.setup()
        if args.toggle == "on":
            rollout_on("effnet")
        else:
            print(json.dumps(rollout_off()))
        return None
    platform = Platform(Path(tempfile.mkdtemp(prefix="mlp-bench-rollouts-")))
    key = set_up(platform)
    worker = shadow_worker(platform)
    try:
        rounds = in_process(platform, key, args.requests, args.rounds)
        c16 = saturated(platform, key, args.seconds)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        platform.tear_down()
    report = {"rounds": rounds, "c16": c16, "summary": summary(rounds, c16)}
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"rollouts-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
