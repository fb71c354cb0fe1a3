"""The Open Inference Protocol's doors next to /api/v1 predict, in one run: CPU per request
beyond the model work, served req/s against the in-process limit, p99.

    .venv/bin/python bench/oip.py [--duration 8] [--rounds 6] [--concurrency 16] [--limit-seconds 3]
    .venv/bin/python bench/oip.py --report bench/results/oip-<time>.json

The platform is set up as bench/serving.py sets it up (production settings, PostgreSQL,
Redis, an API key; throttle, quota and an audit row on every request), and serves the demo
EfficientNet-Lite0 from two servers at once, each as deployed: gunicorn with 2 sync workers
(/api/v1 and the REST /v2) and `manage.py grpcserver` (one process, GRPC_MAX_WORKERS
threads, INFERENCE_CONCURRENCY=2 as in compose and Kubernetes). Six doors, two kinds of
model work:

- tensors (the model work is inference alone): the demo photos preprocessed into
  1x3x224x224 FP32 tensors, sent to /api/v1 predict as `{"inputs": {"input": {"b64", ...}}}`,
  to the REST /v2 infer in tritonclient's binary tensor format (a JSON header, then the
  tensor's bytes; `Inference-Header-Content-Length`), and to gRPC ModelInfer in
  `raw_input_contents`;
- images (the model work is decode + preprocess + inference): the demo JPEG photos, as a
  multipart form to /api/v1 predict (bench/predict.lua), and as an encoded-image BYTES input
  to /v2 over REST (binary) and gRPC (raw).

The v2 bodies are built by tritonclient itself (`generate_request_body` over HTTP,
`_get_inference_request` over gRPC), with its default outputs: every output, in binary.
`wrk` (bench/bodies.lua) drives the REST doors; bench/grpc_load.py, a Python grpc.aio driver
on tritonclient's stubs, drives gRPC and reports its own CPU.

Each round runs every door once, at `--concurrency` closed-loop clients for `--duration`
seconds, in an order rotated every round. Around each served run, right before and right
after it (the machine's speed drifts within seconds; the run uses their mean): the limit
of its kind, 2 processes x 1 ONNX Runtime thread in-process, no HTTP, doing inference
alone or decode + preprocess + inference, and the CPU ms that work takes per item there
(the model work). During the run: the CPU time (user + system, /proc) of the serving
process(es), PostgreSQL and Redis, as bench/cpu_cost.py reads it, divided by the requests
answered; "beyond" is that minus the model work. PostgreSQL counts its own background
processes and the backends of the scratch database, not other databases' backends. The
load generator's CPU is reported apart, and so is everything else the machine did during
the run: it is shared, and a run is "quiet" when the rest kept under QUIET cores busy. The
report gives medians over rounds (min-max), the same over quiet runs, and the differences
the targets are about, paired within each round.

Needs `wrk`. Writes bench/results/oip-<time>.json.
"""

import argparse
import base64
import dataclasses
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cpu_cost import TICKS, _stat  # bench/ is on sys.path
from serving import DEMO, PHOTOS, ROOT, SERVERS, Platform, physical_limit, run_wrk

MODEL = "effnet"  # the demo model, as Platform registers it
INPUT = "input"
BODIES_LUA = ROOT / "bench" / "bodies.lua"
# The gRPC server as compose and Kubernetes run it (docker-compose.yml, deploy/k8s/grpc.yaml).
GRPC_ENV = {"INFERENCE_CONCURRENCY": "2", "GRPC_MAX_WORKERS": "8"}
# No database reconnection inside a measurement: a backend that exits takes its CPU time out
# of /proc before it is read (CONN_MAX_AGE is 60 s in production; a reconnection a minute
# costs a few ms, nothing per request).
BENCH_ENV = {"CONN_MAX_AGE": "3600"}
# A run is "quiet" when everything else on the machine kept less than this many cores busy.
QUIET = 0.25
AUDIT_ROWS = """
from django.db.models import Count
from apps.inference.models import Prediction
rows = Prediction.objects.values_list("source", "status").annotate(n=Count("id"))
print(", ".join(f"{source} {status}: {n}" for source, status, n in sorted(rows)))
"""


# --- The model work in-process -------------------------------------------------------------------


def photo_tensors(preprocessing: dict) -> list[np.ndarray]:
    """The demo photos decoded and preprocessed by the platform's own code: 1x3x224x224 FP32."""
    sys.path.insert(0, str(ROOT))
    from apps.inference.preprocessing import decode_image, image_to_array

    return [
        np.ascontiguousarray(
            image_to_array(
                decode_image(p.read_bytes(), max_pixels=40_000_000, preprocessing=preprocessing).image,
                preprocessing,
            )[None],
            dtype=np.float32,
        )
        for p in PHOTOS
    ]


def _load(model_path: Path):
    sys.path.insert(0, str(ROOT))
    from apps.inference.runtime import RuntimeConfig, load_model

    return load_model((0, ""), model_path, RuntimeConfig(intra_op_threads=1))


def _inference_worker(seconds: float, model_path: str, preprocessing: dict, result) -> None:
    """serving.physical_limit's worker, for inference alone on the photos' tensors."""
    model = _load(Path(model_path))
    tensors = photo_tensors(preprocessing)
    latencies, count, deadline = [], 0, time.perf_counter() + seconds
    cpu = time.process_time()
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        model.run({INPUT: tensors[count % len(tensors)]})
        latencies.append((time.perf_counter() - started) * 1000)
        count += 1
    result.put((count, latencies, time.process_time() - cpu))


# --- The bodies --------------------------------------------------------------------------------


def write_bodies(folder: Path, tensors: list[np.ndarray]) -> dict[str, list[str]]:
    """Every door's request bodies, one file each, by door's body kind."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.grpc._utils import _get_inference_request

    folder.mkdir(parents=True)
    photos = [p.read_bytes() for p in PHOTOS]
    files: dict[str, list[str]] = {
        "v1-tensor": [],
        "rest-fp32": [],
        "rest-bytes": [],
        "grpc-fp32": [],
        "grpc-bytes": [],
    }

    def write(kind: str, index: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        path = folder / f"{kind}-{index}.bin"
        path.write_bytes(body)
        if headers:
            Path(f"{path}.headers").write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        files[kind].append(str(path))

    for i, (tensor, photo) in enumerate(zip(tensors, photos, strict=True)):
        b64 = base64.b64encode(tensor.astype("<f4").tobytes()).decode()
        v1 = {"inputs": {INPUT: {"b64": b64, "dtype": "float32", "shape": list(tensor.shape)}}}
        write("v1-tensor", i, json.dumps(v1).encode())
        for kind, item in _inputs(httpclient, tensor, photo, binary_data=True).items():
            body, header_length = httpclient.InferenceServerClient.generate_request_body([item])
            write(f"rest-{kind}", i, body, {"Inference-Header-Content-Length": str(header_length)})
        for kind, item in _inputs(grpcclient, tensor, photo).items():
            # tritonclient.grpc's own request builder, as its infer() calls it (no outputs named).
            message = _get_inference_request(MODEL, [item], "", "", None, 0, False, False, 0, None, None)
            write(f"grpc-{kind}", i, message.SerializeToString())
    return files


def _inputs(client, tensor: np.ndarray, photo: bytes, **options) -> dict:
    """The tensor as an FP32 input, and the photo as a one-element BYTES input, of `client`."""
    fp32 = client.InferInput(INPUT, list(tensor.shape), "FP32")
    fp32.set_data_from_numpy(tensor, **options)
    image = client.InferInput(INPUT, [1], "BYTES")
    image.set_data_from_numpy(np.array([photo], dtype=np.object_), **options)
    return {"fp32": fp32, "bytes": image}


# --- The servers and the CPU they spend ---------------------------------------------------------


def serve_grpc(platform: Platform, port: int) -> subprocess.Popen:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    command = [sys.executable, str(ROOT / "manage.py"), "grpcserver", "--address", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--grace", "5"],
        env={**platform.env, **GRPC_ENV},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return process
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the gRPC server did not start serving")


def _postgres_counted(pid: int, database: str) -> bool:
    """A PostgreSQL process of this run: the server's own (postmaster, WAL writer,
    checkpointer, autovacuum...) or a backend of `database`; not another database's backend."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    backend = "[local]" in title or ("(" in title and ")" in title)  # "user db 127.0.0.1(port) ..."
    return not backend or database in title.split()


def cpu_seconds(web_master: int, grpc_pid: int, database: str) -> dict[str, float]:
    """CPU seconds so far: gunicorn's workers, the gRPC process, PostgreSQL, Redis."""
    groups = {"web": 0.0, "grpc": 0.0, "postgresql": 0.0, "redis": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        found = _stat(int(entry))
        if found is None:
            continue
        name, parent, seconds = found
        if parent == web_master:
            groups["web"] += seconds
        elif int(entry) == grpc_pid:
            groups["grpc"] += seconds
        elif (name == "postgres" or name.startswith("postgres:")) and _postgres_counted(int(entry), database):
            groups["postgresql"] += seconds
        elif name.startswith("redis-server"):
            groups["redis"] += seconds
    return groups


def settle(read: Callable[[], dict[str, float]], quiet: float = 0.005, longest: float = 5.0) -> None:
    """Wait until the servers stop working on what the last run left in flight (gunicorn
    finishes the requests a departed wrk had sent), so that it is counted in no run."""
    deadline, last = time.monotonic() + longest, read()
    while time.monotonic() < deadline:
        time.sleep(0.4)
        now = read()
        if now["web"] + now["grpc"] - last["web"] - last["grpc"] < quiet:
            return
        last = now


def machine_cpu() -> dict[str, float]:
    """CPU seconds so far of the whole machine, every core: busy (user, nice, system, irq,
    softirq) and stolen by the hypervisor (/proc/stat)."""
    fields = [int(x) / TICKS for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return {"busy": user + nice + system + irq + softirq, "steal": steal}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- The doors -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Door:
    name: str
    work: str  # "tensor": inference alone; "image": decode + preprocess + inference
    server: str  # "web" or "grpc"
    bodies: str  # a key of write_bodies, or "multipart" (bench/predict.lua)


DOORS = [
    Door("/api/v1 tensor (b64 JSON)", "tensor", "web", "v1-tensor"),
    Door("v2 REST FP32 (binary)", "tensor", "web", "rest-fp32"),
    Door("v2 gRPC FP32 (raw)", "tensor", "grpc", "grpc-fp32"),
    Door("/api/v1 image (multipart)", "image", "web", "multipart"),
    Door("v2 REST BYTES image (binary)", "image", "web", "rest-bytes"),
    Door("v2 gRPC BYTES image (raw)", "image", "grpc", "grpc-bytes"),
]
# The targets: (door, the door it must cost no more CPU per request than).
TARGETS = [
    ("v2 REST FP32 (binary)", "/api/v1 tensor (b64 JSON)"),
    ("v2 gRPC FP32 (raw)", "v2 REST FP32 (binary)"),
    ("v2 REST BYTES image (binary)", "/api/v1 image (multipart)"),
    ("v2 gRPC BYTES image (raw)", "v2 REST BYTES image (binary)"),
]


class Bench:
    def __init__(self, platform: Platform, key: str, files: dict[str, list[str]], ports: dict[str, int]):
        self.platform, self.key, self.files, self.ports = platform, key, files, ports
        self.processes: dict[str, subprocess.Popen] = {}

    def read_cpu(self) -> dict[str, float]:
        return cpu_seconds(self.processes["web"].pid, self.processes["grpc"].pid, self.platform.db_name)

    def load(self, door: Door, concurrency: int, seconds: float) -> dict:
        """One closed-loop run against `door`: wrk's or the driver's result, plus `driver_cpu`
        (seconds) and `counted` (requests whose server work the run's CPU holds)."""
        if door.server == "grpc":
            driver = [
                sys.executable,
                str(ROOT / "bench" / "grpc_load.py"),
                "--target",
                f"127.0.0.1:{self.ports['grpc']}",
            ]
            output = subprocess.run(
                [*driver, "--key", self.key, "--concurrency", str(concurrency), "--seconds", str(seconds)]
                + self.files[door.bodies],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(next(x for x in output.splitlines() if x.startswith("BENCH_JSON "))[11:])
            result["throughput"] = result["requests"] / result["seconds"]
            return {**result, "counted": result["completed"], "driver_cpu": result["cpu_seconds"]}
        children = _children_cpu()
        if door.bodies == "multipart":
            result = run_wrk(self.ports["web"], MODEL, self.key, concurrency, seconds)
        else:
            result = run_wrk(
                self.ports["web"],
                MODEL,
                self.key,
                concurrency,
                seconds,
                path=f"/v2/models/{MODEL}/infer" if door.bodies.startswith("rest") else None,
                script=BODIES_LUA,
                extra_env={
                    "BENCH_BODIES": ":".join(self.files[door.bodies]),
                    "BENCH_CONTENT_TYPE": "application/json"
                    if door.bodies == "v1-tensor"
                    else "application/octet-stream",
                },
            )
        return {**result, "counted": result["requests"], "driver_cpu": _children_cpu() - children}

    def measure(self, door: Door, concurrency: int, seconds: float) -> dict:
        before, machine, children, started = self.read_cpu(), machine_cpu(), _children_cpu(), time.monotonic()
        result = self.load(door, concurrency, seconds)
        after, machine_after = self.read_cpu(), machine_cpu()
        children, wall = _children_cpu() - children, time.monotonic() - started
        if result["non2xx"] or result["errors"]:
            failed = f"{result['non2xx']} failed, {result['errors']} errors"
            raise RuntimeError(f"{door.name}: {failed} {result.get('first_error', '')}")
        counted = result["counted"]
        result["cpu_ms"] = {
            "server": (after[door.server] - before[door.server]) * 1000 / counted,
            "postgresql": (after["postgresql"] - before["postgresql"]) * 1000 / counted,
            "redis": (after["redis"] - before["redis"]) * 1000 / counted,
        }
        result["driver_ms"] = result["driver_cpu"] * 1000 / counted
        result["driver_cores"] = result["driver_cpu"] / result["seconds"]
        # The whole machine over the same span: what this run used, and what everything else
        # did (other people's work on the shared machine; the idle server; start-ups).
        ours = sum(after[g] - before[g] for g in (door.server, "postgresql", "redis")) + children
        busy, steal = (machine_after[k] - machine[k] for k in ("busy", "steal"))
        result["cores"] = {"ours": ours / wall, "others": (busy - ours) / wall, "steal": steal / wall}
        settle(self.read_cpu)
        return result


def run(args: argparse.Namespace, bench: Bench, tensors: list[np.ndarray], preprocessing: dict) -> list[dict]:
    model_path = DEMO / "model.onnx"

    def limit(work: str) -> dict:
        """2 processes x 1 thread in-process: inference alone, or serving's decode + preprocess +
        inference; their throughput and CPU ms per item."""
        extra = {"work": _inference_worker} if work == "tensor" else {}
        return physical_limit(2, args.limit_seconds, model_path, preprocessing, **extra)

    for door in DOORS:  # warm-up: sessions, connections, caches, the driver's imports
        bench.load(door, 4, 2)
    settle(bench.read_cpu)
    rounds = []
    for number in range(args.rounds):
        row: dict = {"doors": {}}
        order = DOORS[number % len(DOORS) :] + DOORS[: number % len(DOORS)]
        previous: tuple[str, dict] | None = None  # the last limit measured, right before this run
        for door in order:
            before = previous[1] if previous and previous[0] == door.work else limit(door.work)
            served = bench.measure(door, args.concurrency, args.duration)
            after = limit(door.work)
            previous = (door.work, after)
            # The limit and the model work's CPU: the mean of the measurements right before
            # and right after the run (the machine's speed drifts within seconds).
            served["limit"] = (before["throughput"] + after["throughput"]) / 2
            served["work_ms"] = (before["cpu_ms"] + after["cpu_ms"]) / 2
            served["ratio"] = served["throughput"] / served["limit"]
            served["total_ms"] = sum(served["cpu_ms"].values())
            served["beyond_ms"] = served["total_ms"] - served["work_ms"]
            row["doors"][door.name] = served
            print(
                f"round {number + 1} {door.name:<30} {served['throughput']:6.1f} req/s "
                f"(limit {served['limit']:.1f}: {served['ratio']:.2f}) p99 {served['p99']:6.1f} ms; CPU ms "
                + " ".join(f"{g} {v:.2f}" for g, v in served["cpu_ms"].items())
                + f"; model work {served['work_ms']:.2f}, beyond {served['beyond_ms']:.2f}"
                + f"; load generator {served['driver_ms']:.2f}"
                + f"; cores: ours {served['cores']['ours']:.2f}, others {served['cores']['others']:.2f}",
                flush=True,
            )
        rounds.append(row)
    return rounds


def _spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _share(run: dict) -> float:
    """The in-process model work over all the CPU a request took, the load generator's too:
    the ratio a CPU-bound machine would serve at, whatever else ran beside it."""
    return run["work_ms"] / (run["total_ms"] + run["driver_ms"])


def report(rounds: list[dict], args: dict) -> None:
    runs_of = f"{len(rounds)} rounds of {args['duration']:.0f} s per door"
    print(f"\nconcurrency {args['concurrency']}, {runs_of}; median (min-max)")
    work = {
        kind: [r["doors"][d.name]["work_ms"] for r in rounds for d in DOORS if d.work == kind]
        for kind in ("tensor", "image")
    }
    print(f"model work in-process, CPU ms: inference alone {_spread(work['tensor'])};", end=" ")
    print(f"decode + preprocess + inference {_spread(work['image'])}")
    columns = ["req/s", "limit", "ratio", "p50 ms", "p99 ms", "server", "PostgreSQL", "Redis"]
    columns += ["beyond", "generator", "CPU share"]
    print("| door | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for door in DOORS:
        runs = [r["doors"][door.name] for r in rounds]
        cells = [
            _spread([r["throughput"] for r in runs], 1),
            _spread([r["limit"] for r in runs], 1),
            _spread([r["ratio"] for r in runs]),
            _spread([r["p50"] for r in runs], 1),
            _spread([r["p99"] for r in runs], 1),
            *(_spread([r["cpu_ms"][g] for r in runs]) for g in ("server", "postgresql", "redis")),
            _spread([r["beyond_ms"] for r in runs]),
            _spread([r["driver_ms"] for r in runs]),
            _spread([_share(r) for r in runs]),
        ]
        print(f"| {door.name} | " + " | ".join(cells) + " |")
    print("\ncores busy during the runs: the load generator; this run's (server, PostgreSQL, Redis,")
    print("load generator); everything else on the machine; stolen by the hypervisor")
    for door in DOORS:
        runs = [r["doors"][door.name] for r in rounds]
        cores = {k: _spread([r["cores"][k] for r in runs]) for k in ("ours", "others", "steal")}
        generator = _spread([r["driver_cores"] for r in runs])
        print(
            f"  {door.name:<30} generator {generator}; ours {cores['ours']}; others {cores['others']};"
            f" steal {cores['steal']}"
        )
    print(f"\nquiet runs only (everything else on the machine under {QUIET} cores), CPU ms per request:")
    quiet: dict[str, list[float]] = {}
    for door in DOORS:
        found = [r["doors"][door.name] for r in rounds if r["doors"][door.name]["cores"]["others"] < QUIET]
        quiet[door.name] = [run["total_ms"] for run in found]
        if found:
            total = _spread([run["total_ms"] for run in found])
            beyond = _spread([run["beyond_ms"] for run in found])
            share = _spread([_share(run) for run in found])
            ratio = _spread([run["ratio"] for run in found])
            print(
                f"  {door.name:<30} {len(found)} runs: server + PostgreSQL + Redis {total}; "
                f"beyond {beyond}; CPU share {share}; ratio {ratio}"
            )
        else:
            print(f"  {door.name:<30} no quiet run")
    print("\ntargets, CPU ms per request on the server side (server + PostgreSQL + Redis):")
    for door, reference in TARGETS:
        diffs = [r["doors"][door]["total_ms"] - r["doors"][reference]["total_ms"] for r in rounds]
        verdict = "met" if statistics.median(diffs) <= 0 else "NOT met"
        print(f"  {door} minus {reference}: paired by round {_spread(diffs)} ms -> {verdict}", end="")
        if quiet[door] and quiet[reference]:
            gap = statistics.median(quiet[door]) - statistics.median(quiet[reference])
            print(f"; quiet runs' medians {gap:+.2f} ms -> {'met' if gap <= 0 else 'NOT met'}")
        else:
            print("; too few quiet runs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per served run")
    parser.add_argument("--rounds", type=int, default=6, help="rounds; medians are reported")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit-seconds", type=float, default=3.0, help="seconds per limit measurement")
    parser.add_argument("--report", type=Path, help="print the report of a results file, and stop")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        report(saved["rounds"], saved["args"])
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/oip.py needs wrk: apt-get install wrk")
    # A stopped run (SIGTERM, or SIGINT where a background job ignores it) still stops its
    # servers and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    preprocessing = json.loads((DEMO / "preprocessing.json").read_text())
    tensors = photo_tensors(preprocessing)
    workdir = Path(tempfile.mkdtemp(prefix="mlp-bench-"))
    platform = Platform(workdir)
    platform.env.update(BENCH_ENV)
    key = platform.set_up()
    port = 20000 + os.getpid() % 1000 * 2
    bench = Bench(platform, key, write_bodies(workdir / "bodies", tensors), {"web": port, "grpc": port + 1})
    try:
        bench.processes["web"] = platform.serve(SERVERS["sync-2"], port)
        bench.processes["grpc"] = serve_grpc(platform, port + 1)
        rounds = run(args, bench, tensors, preprocessing)
        audited = platform.manage("shell", "--no-imports", "-c", AUDIT_ROWS)
    finally:
        for process in bench.processes.values():
            process.terminate()
            process.wait(timeout=60)
        platform.tear_down()
    report(rounds, vars(args))
    counted = sum(r["doors"][d.name]["counted"] for r in rounds for d in DOORS)
    print(f"\naudit rows by source and status: {audited.strip()} (requests counted in the runs: {counted})")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    saved = {"args": {**vars(args), "report": None}, "rounds": rounds}
    (out / f"oip-{stamp}.json").write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
