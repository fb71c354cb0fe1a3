"""CPU cost per request: what serving spends beyond decode + preprocess + inference.

    .venv/bin/python bench/cpu_cost.py [--seconds 10] [--concurrency 2] [--server sync-2]

On a machine whose cores are all busy serving, throughput is CPU seconds divided by
CPU seconds per request, so this is the number that decides the ratio at
concurrency 16. It is also far steadier than wall-clock figures on these shared
machines: it counts work, not waiting.

It sets the platform up as bench/serving.py does (production settings, PostgreSQL,
Redis, API key, throttle, quota, audit rows), runs closed-loop `wrk` clients, and
reads the CPU time (user + system, /proc) of every process on the serving path
before and after: the gunicorn workers, the PostgreSQL server processes,
redis-server and wrk itself. In the same run it measures the CPU time of the same
decode + preprocess + inference in-process (1 ONNX Runtime thread, no HTTP).

Prints CPU milliseconds per request by process group, and the served share:
in-process cost / total cost per request, the ratio the platform could reach at
full load if nothing else ran on the machine.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from serving import BODY, DEMO, PHOTOS, ROOT, SERVERS, Platform, run_wrk  # bench/ is on sys.path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def cpu_by_group(master: int) -> dict[str, float]:
    """CPU seconds so far of the server's workers, PostgreSQL and Redis, by group."""
    groups = {"web": 0.0, "postgresql": 0.0, "redis": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        found = _stat(int(entry))
        if found is None:
            continue
        name, parent, seconds = found
        if parent == master:
            groups["web"] += seconds
        elif name == "postgres" or name.startswith("postgres:"):
            groups["postgresql"] += seconds
        elif name.startswith("redis-server"):
            groups["redis"] += seconds
    return groups


def in_process_cpu_ms(model_path: Path, preprocessing: dict, count: int = 400) -> float:
    sys.path.insert(0, str(ROOT))
    from apps.inference.preprocessing import decode_image, image_to_array
    from apps.inference.runtime import RuntimeConfig, load_model

    model = load_model((0, ""), model_path, RuntimeConfig(intra_op_threads=1))
    name = model.input_names[0]
    photos = [p.read_bytes() for p in PHOTOS]
    for i in range(20):
        model.run(
            {
                name: image_to_array(decode_image(photos[i % 5], max_pixels=40_000_000).image, preprocessing)[
                    None
                ]
            }
        )
    started = time.process_time()
    for i in range(count):
        decoded = decode_image(photos[i % len(photos)], max_pixels=40_000_000)
        model.run({name: image_to_array(decoded.image, preprocessing)[None]})
    return (time.process_time() - started) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--server", default="sync-2", help=f"of {', '.join(SERVERS)}")
    parser.add_argument("--model", default="effnet", choices=["effnet", "tiny"])
    parser.add_argument("--body", choices=["multipart", "raw"], default="multipart")
    args = parser.parse_args()
    BODY["value"] = args.body
    preprocessing = json.loads((DEMO / "preprocessing.json").read_text())
    platform = Platform(Path(tempfile.mkdtemp(prefix="mlp-bench-")))
    key = platform.set_up()
    port = 19000 + os.getpid() % 1000
    process = platform.serve(SERVERS[args.server], port)
    try:
        run_wrk(port, args.model, key, args.concurrency, 2)  # warm-up: connections, caches
        before = cpu_by_group(process.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        served = run_wrk(port, args.model, key, args.concurrency, args.seconds)
        after = cpu_by_group(process.pid)
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        process.terminate()
        process.wait()
        platform.tear_down()
    requests = served["requests"]
    cost = {group: (after[group] - before[group]) * 1000 / requests for group in before}
    cost["wrk"] = (done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime) * 1000 / requests
    if args.model == "tiny":
        from tests.onnx_models import tiny_classifier

        path = Path(tempfile.mkdtemp()) / "tiny.onnx"
        path.write_bytes(tiny_classifier())
        base = in_process_cpu_ms(path, {**preprocessing, "resize": 8, "crop": 8})
    else:
        base = in_process_cpu_ms(DEMO / "model.onnx", preprocessing)
    total = sum(cost.values())
    print(
        f"{args.model} on {args.server}, concurrency {args.concurrency}, {args.body} bodies: "
        f"{requests} requests, {served['non2xx']:.0f} non-2xx, p50 {served['p50']:.1f} ms"
    )
    print(f"  in-process decode + preprocess + inference: {base:.2f} ms CPU per image")
    for group, ms in cost.items():
        print(f"  {group:<11} {ms:6.2f} ms CPU per request")
    print(
        f"  total       {total:6.2f} ms; beyond in-process {total - base:.2f} ms; "
        f"served share {base / total:.2f}"
    )


if __name__ == "__main__":
    main()
