"""Issue 21's bench: the platform in both audit modes next to MLServer and LitServe, one run.

    .venv/bin/python bench/compare.py [--rounds 3] [--duration 15] [--servers ...]

All servers serve the demo EfficientNet-Lite0 on this machine at once (idle while another
is measured), each with 2 processes x 1 ONNX Runtime thread:

- durable: the platform as deployed (gunicorn, 2 sync workers, production settings,
  PostgreSQL, Redis, API key, throttle, quota, audit row), AUDIT_MODE=durable;
- stream: the same with AUDIT_MODE=stream and `manage.py auditwriter` copying the rows;
- mlserver: Seldon MLServer 1.7.1 (Open Inference Protocol JSON, one BYTES input with the
  base64 JPEG; 2 parallel workers, adaptive batching 8 / 10 ms), in bench/.peers;
- litserve: LitServe 0.2.19 (JSON with the base64 JPEG; 2 workers, batching 8 / 10 ms).

The peers' virtual environments are created on first use (bench/peers.py, pinned, PyPI).
Each round runs every server in an order rotated every round: closed-loop `wrk` at
concurrency 16 for --duration seconds with the in-process limit (2 processes x 1 thread,
decode + preprocess + inference, no HTTP) measured right before and right after (the
ratio uses their mean), then concurrency 1 for a third of that (p50 against the limit's
own p50 per image). CPU per request comes from /proc: the server's whole process tree,
and for the platform PostgreSQL (the scratch database's backends and the server's own
processes), Redis and the audit writer. "others" is what the rest of the machine did
meanwhile, in cores: the machine is shared, and a round with others > 0.25 is noisy.

The audit rows are counted at the end (the stream's after the writer has drained it):
every answered prediction must have its row. Prints medians (min-max) over rounds and
writes bench/results/compare-<time>.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_cost import _stat  # bench/ is on sys.path
from oip import BENCH_ENV, BODIES_LUA, QUIET, _postgres_counted, machine_cpu
from peers import Peer, peers
from serving import BODY, DEMO, PHOTOS, ROOT, SERVERS, Platform, physical_limit, run_wrk

PLATFORM_MODES = ("durable", "stream")


def platform_mode(name: str) -> str | None:
    """ "stream" or "stream@gthread-2x1" (a server of bench/serving.py's SERVERS; default
    sync-2, as deployed): the platform's audit mode, None for a peer."""
    mode = name.split("@")[0]
    return mode if mode in PLATFORM_MODES else None


def process_tree(root: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            parents[int(entry)] = found[1]
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def cpu_now(trees: dict[str, int], database: str) -> dict[str, float]:
    """CPU seconds so far by group: each named process tree, PostgreSQL, Redis."""
    members = {name: process_tree(root) for name, root in trees.items()}
    groups = dict.fromkeys(trees, 0.0) | {"postgresql": 0.0, "redis": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (found := _stat(int(entry))) is None:
            continue
        name, _, seconds = found
        owner = next((group for group, pids in members.items() if int(entry) in pids), None)
        if owner:
            groups[owner] += seconds
        elif (name == "postgres" or name.startswith("postgres:")) and _postgres_counted(int(entry), database):
            groups["postgresql"] += seconds
        elif name.startswith("redis-server"):
            groups["redis"] += seconds
    return groups


class Servers:
    """Every server of the run, started once; `target` says how wrk reaches each."""

    def __init__(self, names: list[str], workdir: Path) -> None:
        self.names, self.workdir = names, workdir
        self.platform = Platform(workdir / "platform")
        self.platform.env.update(BENCH_ENV)
        self.processes: dict[str, subprocess.Popen] = {}
        self.peers: dict[str, Peer] = {}
        self.ports: dict[str, int] = {}
        self.key = ""

    def start(self) -> None:
        (self.workdir / "platform").mkdir()
        self.key = self.platform.set_up()
        port = 20000 + os.getpid() % 1000 * 10
        for name in self.names:
            self.ports[name] = port
            if mode := platform_mode(name):
                self.platform.env["AUDIT_MODE"] = mode
                server = name.split("@")[1] if "@" in name else "sync-2"
                self.processes[name] = self.platform.serve(SERVERS[server], port)
                if mode == "stream" and "writer" not in self.processes:
                    self.processes["writer"] = subprocess.Popen(
                        [sys.executable, str(ROOT / "manage.py"), "auditwriter"],
                        env=self.platform.env,
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=(self.workdir / "writer.log").open("wb"),
                    )
            else:
                peer = peers([name])[0]
                peer.start(port, self.workdir)
                self.peers[name] = peer
                self.processes[name] = peer.process
                bodies = []
                for photo in PHOTOS:
                    path = self.workdir / f"{name}-{photo.stem}.json"
                    path.write_bytes(peer.body(photo.read_bytes()))
                    bodies.append(str(path))
                peer.bodies = ":".join(bodies)
            port += 5

    def wrk(self, name: str, concurrency: int, seconds: float) -> dict:
        if platform_mode(name):
            return run_wrk(self.ports[name], "effnet", self.key, concurrency, seconds)
        peer = self.peers[name]
        extra = {"BENCH_BODIES": peer.bodies, "BENCH_CONTENT_TYPE": "application/json"}
        return run_wrk(
            self.ports[name], "", "", concurrency, seconds, path=peer.path, script=BODIES_LUA, extra_env=extra
        )

    def trees(self, name: str) -> dict[str, int]:
        trees = {name: self.processes[name].pid}
        if platform_mode(name) == "stream":
            trees["writer"] = self.processes["writer"].pid
        return trees

    def stop(self) -> None:
        for name, process in self.processes.items():
            if name in self.peers:
                self.peers[name].stop()
            elif process.poll() is None:
                process.terminate()
                process.wait()
        self.platform.tear_down()


def settle(read, quiet: float = 0.01, longest: float = 5.0) -> None:
    """Wait until a server has finished what a departed wrk left in flight."""
    deadline, last = time.monotonic() + longest, read()
    while time.monotonic() < deadline:
        time.sleep(0.4)
        now = read()
        if sum(now.values()) - sum(last.values()) < quiet:
            return
        last = now


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(servers: Servers, name: str, args: argparse.Namespace) -> dict:
    """One server, concurrency 16 between two limits, then concurrency 1."""
    preprocessing = json.loads((DEMO / "preprocessing.json").read_text())
    database = servers.platform.db_name
    trees = servers.trees(name)
    settle(lambda: {k: v for k, v in cpu_now(trees, database).items() if k in trees})
    limit_before = physical_limit(2, args.limit_seconds, DEMO / "model.onnx", preprocessing)
    before, machine, started, children = (
        cpu_now(trees, database),
        machine_cpu(),
        time.monotonic(),
        _children_cpu(),
    )
    served = servers.wrk(name, args.concurrency, args.duration)
    after, machine_after, elapsed = cpu_now(trees, database), machine_cpu(), time.monotonic() - started
    wrk = _children_cpu() - children
    limit_after = physical_limit(2, args.limit_seconds, DEMO / "model.onnx", preprocessing)
    requests = max(served["requests"], 1)
    cpu = {group: (after[group] - before[group]) * 1000 / requests for group in before}
    if not platform_mode(name):
        cpu.pop("postgresql"), cpu.pop("redis")
    counted = sum(after[g] - before[g] for g in before) + wrk
    limit = (limit_before["throughput"] + limit_after["throughput"]) / 2
    one = servers.wrk(name, 1, max(args.duration / 3, 2))
    return {
        **{k: served[k] for k in ("requests", "non2xx", "errors", "p50", "p99")},
        "throughput": served["throughput"],
        "limit": limit,
        "ratio": served["throughput"] / limit,
        "limit_p50": (limit_before["p50"] + limit_after["p50"]) / 2,
        "limit_cpu_ms": (limit_before["cpu_ms"] + limit_after["cpu_ms"]) / 2,
        "c1_p50": one["p50"],
        "c1_requests": one["requests"],
        "c1_non2xx": one["non2xx"] + one["errors"],
        "cpu_ms": cpu,
        "cpu_total_ms": sum(cpu.values()),
        "wrk_ms": wrk * 1000 / requests,
        "others": max(machine_after["busy"] - machine["busy"] - counted, 0) / elapsed,
    }


def audit_check(servers: Servers, answered: int) -> str:
    """Wait for the writer to drain the stream, then count the platform's audit rows."""
    import redis

    stream = f"{servers.platform.env['CACHE_KEY_PREFIX']}:audit"
    client = redis.Redis.from_url(servers.platform.env["REDIS_URL"])
    deadline = time.monotonic() + 60
    while client.xlen(stream) and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = servers.platform.audit_rows()
    left = client.xlen(stream)
    return (
        f"{answered} platform predictions answered 2xx, {rows} audit rows stored, {left} left in the stream"
    )


def main() -> None:
    if sys.argv[1:2] == ["--report"]:  # print a saved run again: --report bench/results/compare-<time>.json
        saved = json.loads(Path(sys.argv[2]).read_text())
        args = argparse.Namespace(concurrency=16, duration=saved.get("duration", 0))
        report(list(saved["rounds"][0]), saved["rounds"], args, saved.get("audit", ""))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds at concurrency 16")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit-seconds", type=float, default=3.0)
    parser.add_argument("--servers", default="durable,stream,mlserver,litserve")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/compare.py needs wrk: apt-get install wrk")
    BODY["value"] = "raw"  # the platform gets the JPEG as the body; the peers base64 in JSON
    names = args.servers.split(",")
    servers = Servers(names, Path(tempfile.mkdtemp(prefix="mlp-compare-")))
    rounds: list[dict[str, dict]] = []
    answered = 0
    try:
        servers.start()
        for name in names:  # warm-up: connections, caches, the peers' batchers
            warm = servers.wrk(name, 4, 2)
            answered += warm["requests"] - warm["non2xx"] if platform_mode(name) else 0
        for number in range(args.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            row = {}
            for name in order:
                row[name] = result = measure(servers, name, args)
                if platform_mode(name):
                    answered += (
                        result["requests"] - result["non2xx"] + result["c1_requests"] - result["c1_non2xx"]
                    )
                print(f"round {number + 1} {name}: {summary(result)}", flush=True)
            rounds.append(row)
        audited = audit_check(servers, answered) if any(map(platform_mode, names)) else ""
    finally:
        servers.stop()
        shutil.rmtree(servers.workdir, ignore_errors=True)
    report(names, rounds, args, audited)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    saved = {"duration": args.duration, "rounds": rounds, "audit": audited}
    (out / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(saved, indent=2))


def summary(r: dict) -> str:
    cpu = ", ".join(f"{g} {ms:.2f}" for g, ms in r["cpu_ms"].items())
    failed = r["non2xx"] + r["errors"]
    return (
        f"{r['throughput']:.1f} req/s, limit {r['limit']:.1f}, ratio {r['ratio']:.2f}, "
        f"p99 {r['p99']:.0f} ms, c1 p50 {r['c1_p50']:.1f} (limit {r['limit_p50']:.1f}) ms, "
        f"CPU ms/req {r['cpu_total_ms']:.2f} ({cpu}; model work {r['limit_cpu_ms']:.2f}), "
        f"non-2xx {failed:.0f}, others {r['others']:.2f} cores"
    )


def report(names: list[str], rounds: list[dict], args: argparse.Namespace, audited: str) -> None:
    width = max(map(len, names)) + 2

    def med(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    def spread(name: str, key: str, fmt: str) -> str:
        values = [r[name][key] for r in rounds]
        return f"{fmt.format(med(name, key))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    print(
        f"\nconcurrency {args.concurrency}, {args.duration:.0f} s, medians (min-max) of {len(rounds)} rounds"
    )
    columns = ("limit", "p99 ms", "c1 p50", "lim p50", "CPU/req", "model", "others")
    print(f"{'server':<{width}}{'req/s':>20}{'ratio':>18}" + "".join(f"{c:>9}" for c in columns))
    for name in names:
        keys = ("limit", "p99", "c1_p50", "limit_p50", "cpu_total_ms", "limit_cpu_ms", "others")
        print(
            f"{name:<{width}}{spread(name, 'throughput', '{:.1f}'):>20}{spread(name, 'ratio', '{:.2f}'):>18}"
            + "".join(f"{med(name, k):9.1f}" if k != "others" else f"{med(name, k):9.2f}" for k in keys)
        )
    for other in names:
        if other in ("mlserver", "durable"):  # paired within each round: the same machine minutes
            pairs = ", ".join(f"{n} {paired(rounds, n, other)}" for n in names if n != other)
            print(f"req/s against {other} (same round, median; CPU per request difference): {pairs}")
    noisy = sum(1 for r in rounds for n in names if r[n]["others"] > QUIET)
    print(
        f"runs with others > {QUIET} cores (noisy; ratios unreliable): {noisy} of {len(rounds) * len(names)}"
    )
    print("CPU ms per request by group (median):")
    for name in names:
        groups = rounds[0][name]["cpu_ms"]
        cpu = ", ".join(f"{g} {statistics.median(r[name]['cpu_ms'][g] for r in rounds):.2f}" for g in groups)
        print(f"  {name:<{width}}{cpu}; wrk {med(name, 'wrk_ms'):.2f}")
    targets(names, med)
    if audited:
        print(f"audit: {audited}")


def paired(rounds: list[dict], name: str, other: str) -> str:
    """Median over rounds of the req/s ratio and the CPU-per-request difference of two servers."""
    ratio = statistics.median(r[name]["throughput"] / r[other]["throughput"] for r in rounds)
    cpu = statistics.median(r[name]["cpu_total_ms"] - r[other]["cpu_total_ms"] for r in rounds)
    return f"{ratio:.2f} ({cpu:+.2f} ms CPU)"


def targets(names: list[str], med) -> None:
    """Issue 21's targets against this run's medians."""
    checks = {"stream": 0.90, "durable": 0.80}
    for name, floor in checks.items():
        if name in names:
            ratio, p99 = med(name, "ratio"), med(name, "p99")
            c1, limit = med(name, "c1_p50"), med(name, "limit_p50")
            print(
                f"target {name}: ratio {ratio:.2f} >= {floor} {'met' if ratio >= floor else 'NOT met'}; "
                f"p99 {p99:.0f} <= 160 ms {'met' if p99 <= 160 else 'NOT met'}; "
                f"c1 p50 {c1:.1f} <= limit p50 {limit:.1f} + 3 ms {'met' if c1 <= limit + 3 else 'NOT met'}"
            )
    if "stream" in names and "mlserver" in names:
        above = med("stream", "ratio") >= med("mlserver", "ratio")
        print(f"target stream at or above MLServer: {'met' if above else 'NOT met'}")


if __name__ == "__main__":
    main()
