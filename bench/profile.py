"""A sampling profile of the platform's web workers under load, by component and function.

    .venv/bin/python bench/profile.py [--mode durable|stream] [--seconds 20] [--rate 200]

Starts the platform as bench/compare.py does (gunicorn, 2 sync workers, production
settings, PostgreSQL, Redis, API key, throttle, quota, audit; AUDIT_MODE=--mode, with its
audit writer for "stream"), drives it with `wrk` at concurrency 16, and samples both web
workers with py-spy (`record --format raw --nonblocking`: active samples only, the
workers are not paused). Meanwhile it reads the CPU time of the workers, PostgreSQL,
Redis and the writer from /proc.

Prints the share of the workers' samples by component (each sample is charged to the
innermost frame that names one: inference, decode + preprocess, audit, throttle, ...),
the same converted to CPU ms per request with the workers' measured CPU, and the top
functions by self and by inclusive samples. py-spy needs ptrace rights (root, or
kernel.yama.ptrace_scope=0).
"""

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from compare import Servers, cpu_now, process_tree
from serving import BIN, BODY

# (component, pattern on a frame "function (file:line)"), tried from the innermost frame out.
COMPONENTS = [
    ("inference (ONNX Runtime)", r"onnxruntime/"),
    ("decode + preprocess", r"apps/inference/preprocessing\.py|PIL/"),
    ("audit + quota (sink)", r"apps/inference/audit\.py|apps/auditstream/|apps/accounts/quota_counter\.py"),
    ("throttle + rate limit", r"apps/accounts/(throttling|ratelimit)\.py"),
    ("authentication", r"apps/accounts/(authentication|credentials|permissions)\.py|apps/oauth/"),
    ("target resolution", r"apps/inference/targets\.py|apps/rollouts/"),
    ("pipeline + postprocess", r"apps/inference/(pipeline|postprocessing|inputs|inferring)\.py"),
    (
        "request parsing (DRF/Django)",
        r"rest_framework/(request|parsers)\.py|multipartparser|apps/core/parsers",
    ),
    ("response rendering", r"rest_framework/(renderers|response)\.py|apps/core/renderers|json/encoder"),
    ("logging + metrics", r"logging/|prometheus|apps/core/metrics"),
    (
        "middleware",
        r"apps/core/middleware\.py|apps/accounts/middleware\.py|django/middleware|django_prometheus",
    ),
    ("DRF / Django other", r"rest_framework/|django/"),
    ("gunicorn", r"gunicorn/"),
]


def component(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in COMPONENTS:
            if re.search(pattern, frame):
                return name
    return "other"


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            samples.append((stack.split(";"), int(count)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["durable", "stream"], default="durable")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if shutil.which("wrk") is None or not (BIN / "py-spy").exists():
        sys.exit("bench/profile.py needs wrk and py-spy")
    BODY["value"] = "raw"
    workdir = Path(tempfile.mkdtemp(prefix="mlp-profile-"))
    servers = Servers([args.mode], workdir)
    try:
        servers.start()
        servers.wrk(args.mode, 4, 2)  # warm-up
        master = servers.processes[args.mode].pid
        workers = sorted(process_tree(master) - {master})
        trees, database = servers.trees(args.mode), servers.platform.db_name
        before = cpu_now(trees, database)
        load: dict = {}
        thread = threading.Thread(target=lambda: load.update(servers.wrk(args.mode, 16, args.seconds + 2)))
        thread.start()
        outputs = [workdir / f"{pid}.txt" for pid in workers]
        spy = [str(BIN / "py-spy"), "record", "--format", "raw", "--nonblocking", "--rate", str(args.rate)]
        spies = [
            subprocess.Popen(
                [*spy, "--duration", str(args.seconds), "--pid", str(pid), "--output", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, out in zip(workers, outputs, strict=True)
        ]
        for spy in spies:
            spy.wait()
        thread.join()
        after = cpu_now(trees, database)
        samples = [sample for out in outputs for sample in read_raw(out)]
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    requests = load["requests"]
    cpu = {group: (after[group] - before[group]) * 1000 / requests for group in before}
    report(args, samples, cpu, load)


def report(args: argparse.Namespace, samples: list, cpu: dict, load: dict) -> None:
    total = sum(count for _, count in samples)
    web_ms = cpu[args.mode]
    print(f"AUDIT_MODE={args.mode}, concurrency 16, {load['throughput']:.1f} req/s, {total} active samples")
    print("CPU ms per request by process group: " + ", ".join(f"{g} {ms:.2f}" for g, ms in cpu.items()))
    by_component: collections.Counter = collections.Counter()
    selfs: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    for stack, count in samples:
        by_component[component(stack)] += count
        selfs[stack[-1]] += count
        for frame in set(stack):
            inclusive[frame] += count
    print("\nweb worker samples by component (share; CPU ms per request at the workers' measured CPU):")
    for name, count in by_component.most_common():
        print(f"  {count / total:6.1%}  {count / total * web_ms:6.2f} ms  {name}")
    print("\nwhere each component beyond the model work spends (self samples):")
    for name, _count in by_component.most_common():
        if name.startswith(("inference", "decode")):
            continue
        inside = collections.Counter()
        for stack, n in samples:
            if component(stack) == name:
                inside[stack[-1]] += n
        top = ", ".join(f"{frame.split(' (')[0]} {n / total:.1%}" for frame, n in inside.most_common(5))
        print(f"  {name}: {top}")
    print(f"\ntop {args.top} functions by self samples:")
    for frame, count in selfs.most_common(args.top):
        print(f"  {count / total:6.1%}  {frame}")
    print(f"\ntop {args.top} functions by inclusive samples:")
    for frame, count in inclusive.most_common(args.top):
        print(f"  {count / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
