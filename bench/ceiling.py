"""The ceiling: what a bare Python WSGI app reaches, next to the platform, in one run.

    .venv/bin/python bench/ceiling.py [--duration 10] [--repeat 3] [--concurrency 16]

The platform's target is 0.9 of the physical limit at concurrency 16. This measures how
much of that any Python WSGI server could reach on this machine, with the load generator,
PostgreSQL and Redis on the same cores. Three servers, each gunicorn with 2 sync workers,
behind the same closed-loop `wrk` clients sending the photos as raw JPEG bodies:

- bare: bench/bare_app.py, the model work and a JSON answer, nothing else;
- bare + audit: the same, plus one durable INSERT per request into PostgreSQL;
- platform: the platform as deployed (bench/serving.py's set-up: production settings,
  API key, throttle, quota, the audit row).

The limit is measured right before and right after each served run (the machine's
speed drifts within seconds), and the run's ratio uses their mean; rounds rotate the
servers' order, and the report gives medians over rounds. It also reads the CPU time each
server's workers, PostgreSQL, Redis and wrk spend per request (as bench/cpu_cost.py does);
"vs bare" is the difference from the bare app in the same round: what the extra work costs.
Needs `wrk`.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

from cpu_cost import cpu_by_group  # bench/ is on sys.path
from serving import BIN, BODY, DEMO, ROOT, SERVERS, Platform, physical_limit, run_wrk

BARE = ["--worker-class", "sync", "--workers", "2", "--threads", "1"]


def serve_bare(port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "bare_app:application", *BARE, "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT / "bench",  # not the project's folder: its gunicorn.conf.py is the platform's
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    photo = (ROOT / "demo" / "images" / "coffee.jpg").read_bytes()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # every worker loads the model before it answers; ask until two have
            for _ in range(4):
                urlopen(f"http://127.0.0.1:{port}/", data=photo, timeout=5)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the bare app did not start")


def _children_cpu() -> float:
    """CPU seconds of finished child processes (each wrk run) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit-seconds", type=float, default=3.0, help="seconds per limit measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/ceiling.py needs wrk: apt-get install wrk")
    import psycopg

    BODY["value"] = "raw"
    preprocessing = json.loads((DEMO / "preprocessing.json").read_text())
    platform = Platform(Path(tempfile.mkdtemp(prefix="mlp-bench-")))
    key = platform.set_up()
    dsn = platform.env["DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bare_audit (id bigserial PRIMARY KEY, created timestamptz NOT NULL"
            " DEFAULT now(), digest char(64) NOT NULL, output jsonb NOT NULL)"
        )
    port = 17000 + os.getpid() % 1000
    servers: dict[str, subprocess.Popen] = {}
    rounds: list[dict[str, dict]] = []
    try:
        servers["bare"] = serve_bare(port, {k: v for k, v in os.environ.items() if k != "BARE_DSN"})
        servers["bare + audit"] = serve_bare(port + 1, {**os.environ, "BARE_DSN": dsn})
        servers["platform"] = platform.serve(SERVERS["sync-2"], port + 2)
        ports = {"bare": port, "bare + audit": port + 1, "platform": port + 2}
        for name in servers:  # warm-up: connections, caches
            run_wrk(ports[name], "effnet", key, 4, 2)
        names = list(servers)

        def limit() -> float:
            return physical_limit(2, args.limit_seconds, DEMO / "model.onnx", preprocessing)["throughput"]

        for round_ in range(args.repeat):
            # The limit right before and right after each served run, and their mean: the
            # machine's speed drifts within seconds. Rounds rotate the servers' order.
            row: dict[str, dict] = {}
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                limit_before = limit()
                before, children = cpu_by_group(servers[name].pid), _children_cpu()
                served = run_wrk(ports[name], "effnet", key, args.concurrency, args.duration)
                after, wrk = cpu_by_group(servers[name].pid), _children_cpu() - children
                if served["non2xx"] or served["errors"]:
                    raise RuntimeError(f"{name}: {served['non2xx']} non-2xx, {served['errors']} errors")
                cpu = {group: (after[group] - before[group]) * 1000 for group in before}
                served["cpu_ms"] = (sum(cpu.values()) + wrk * 1000) / served["requests"]
                served["limit"] = (limit_before + limit()) / 2
                row[name] = {**served, "ratio": served["throughput"] / served["limit"]}
            rounds.append(row)
            print(
                "; ".join(
                    f"{n} {row[n]['throughput']:.1f} req/s (limit {row[n]['limit']:.1f}: "
                    f"{row[n]['ratio']:.2f}), {row[n]['cpu_ms']:.2f} ms CPU"
                    for n in servers
                ),
                flush=True,
            )
        with psycopg.connect(dsn) as conn:
            audited = conn.execute("SELECT count(*) FROM bare_audit").fetchone()[0]
    finally:
        for process in servers.values():
            process.terminate()
            process.wait()
        platform.tear_down()
    print(f"\nconcurrency {args.concurrency}, medians of {args.repeat} rounds of {args.duration:.0f} s:")
    columns = ("req/s", "limit", "ratio", "p50 ms", "p99 ms", "CPU ms", "vs bare")
    print(f"{'server':<14}" + "".join(f"{c:>9}" for c in columns))
    for name in servers:
        keys = ("throughput", "limit", "ratio", "p50", "p99", "cpu_ms")
        med = {k: statistics.median(r[name][k] for r in rounds) for k in keys}
        extra = statistics.median(r[name]["cpu_ms"] - r["bare"]["cpu_ms"] for r in rounds)
        print(
            f"{name:<14}{med['throughput']:9.1f}{med['limit']:9.1f}{med['ratio']:9.2f}{med['p50']:9.1f}"
            f"{med['p99']:9.1f}{med['cpu_ms']:9.2f}{extra:+9.2f}"
        )
    print(f"bare + audit rows committed: {audited}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"ceiling-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
