"""The photo-size ladder: the full image decode against fast_decode, from the demo photos to
camera-like 12 MP JPEGs, in process and served, in one run.

    .venv/bin/python bench/ladder.py [--rounds 3] [--duration 10] [--limit-seconds 4]
                                     [--job-scale 1.0] [--skip-served] [--skip-jobs]

Rungs (JPEG, quality 90):
- demo: demo/images as they are (5 photos, 451-640 px on the long side);
- 2 MP and 12 MP: the same photos enlarged (bicubic, aspect ratio kept) to about 2 and
  12 MP. Enlarged photos are smooth, so their entropy decoding is cheap: they flatter
  both decoders, and the full decode's share that drafting saves;
- detailed 12 MP: tests/images.detailed_12mp(seed), seeds 0-4: 7x7 mosaics of the demo
  photos at their own resolution over 4032x3024, plus luma grain (sigma 10) and per-channel
  noise (sigma 4): 5.2 MB each, about what a phone's 12 MP JPEG weighs.
The answers are compared on more photos: the demo, 2 MP and 12 MP rungs add the 25 photos
of the demo model's evaluation set (demo/efficientnet_lite0/eval-set.zip), enlarged alike.

In process, one core, no HTTP, the platform's own decode_image / image_to_array / runtime
with the demo model's preprocessing (resize 256, crop 224, bilinear):
1. preprocess (decode + image_to_array) p50 per image with fast_decode false ("full") and
   true ("fast"), the two alternating image by image;
2. the demo model's inference p50 on the same arrays;
3. top-1 agreement and the largest softmax difference between the two decoders;
4. the limit: decode + preprocess + inference in 2 processes x 1 ONNX Runtime thread
   (bench/serving.py's limit, here on the rung's photos and with each decoder).
Also the 12 MP rung's photos as progressive JPEGs, and as PNG, WebP, BMP and GIF, whose
fast path is the reduction before the resize (reducing_gap), not a reduced decode.

Served (bench/serving.py's Platform and wrk: production settings, PostgreSQL, Redis, API
key, throttle, quota, audit row, gunicorn sync 2): the demo model registered twice,
"effnet-full" with fast_decode false and "effnet" with it on; closed-loop wrk clients at
concurrency 16 post each rung's photos. In each round every rung runs both, the order
swapped every round, each right after a limit measured with its own decoder. Batch jobs
(bench/jobs.py's Stack: one gunicorn, one Celery worker process): one job per rung and
decoder, alternating the same way; throughput from the job's started_at / finished_at.

The served and job numbers show the new decoder only if the pipeline passes the version's
preprocessing to decode_image (apps/inference/pipeline.py does since a1e5aca).

Prints tables and writes bench/results/ladder-<time>.json. The served part needs wrk.
"""

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobs  # bench/ is on sys.path when run
import numpy as np
import requests
import serving
from common import register_demo
from serving import DEMO, ROOT, SERVERS, Platform, run_wrk

sys.path.insert(0, str(ROOT))
from PIL import Image

from tests import images

MAX_PIXELS = 40_000_000  # settings.MAX_IMAGE_PIXELS's default
DEMO_CONFIG = json.loads((DEMO / "preprocessing.json").read_text())
CONFIGS = {"full": {**DEMO_CONFIG, "fast_decode": False}, "fast": {**DEMO_CONFIG, "fast_decode": True}}
MODELS = {"full": "effnet-full", "fast": "effnet"}
CONCURRENCY = 16
JOB_REDIS_DB = 11  # not bench/jobs.py's 9: a jobs benchmark running at the same time keeps its queues
# Images per batch job, before --job-scale: about 10 s of the full decoder on one worker.
JOB_IMAGES = {"demo": 480, "2 MP": 160, "12 MP": 64, "detailed 12 MP": 40}
# Targets (issue 14): fast 12 MP preprocessing within 3x the model's inference; served 12 MP
# at least 3x the full decoder's req/s; softmax within 0.05; small photos' ratio to the
# limit no more than 0.02 lower.
TARGETS = {"preprocess_vs_inference": 3.0, "served_speedup": 3.0, "softmax": 0.05, "small_ratio_drop": 0.02}


@dataclass
class Rung:
    name: str
    served: list[bytes]  # what the limit, wrk and the jobs send: 5 photos
    extra: list[bytes] = field(default_factory=list)  # more photos for the answers
    paths: list[Path] = field(default_factory=list)

    @property
    def answers(self) -> list[bytes]:
        return self.served + self.extra


def _eval_set() -> list[Image.Image]:
    with zipfile.ZipFile(DEMO / "eval-set.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        return [Image.open(io.BytesIO(archive.read(n))).convert("RGB") for n in names]


def build_rungs(workdir: Path) -> list[Rung]:
    demo = [p.read_bytes() for p in serving.PHOTOS]
    photos = [images.photo(p.stem) for p in serving.PHOTOS]
    evaluation = _eval_set()
    eval_bytes = [images.encode(image, "JPEG", quality=90) for image in evaluation]
    rungs = [Rung("demo", demo, eval_bytes)]
    for label, pixels in (("2 MP", 2_000_000), ("12 MP", 12_000_000)):
        rungs.append(
            Rung(
                label,
                [images.enlarge(photo, pixels) for photo in photos],
                [images.enlarge(image, pixels) for image in evaluation],
            )
        )
    rungs.append(Rung("detailed 12 MP", [images.detailed_12mp(seed) for seed in range(5)]))
    for rung in rungs:
        folder = workdir / "photos" / rung.name.replace(" ", "-")
        folder.mkdir(parents=True)
        for index, data in enumerate(rung.served):
            path = folder / f"{index}.jpg"
            path.write_bytes(data)
            rung.paths.append(path)
    return rungs


def describe(data: list[bytes]) -> dict[str, Any]:
    sizes = [Image.open(io.BytesIO(d)).size for d in data]
    return {
        "megapixels": statistics.median(w * h for w, h in sizes) / 1e6,
        "kilobytes": statistics.median(len(d) for d in data) / 1000,
    }


# --- In process ------------------------------------------------------------------------------------


def _load_demo_model(threads: int = 1) -> Any:
    from apps.inference.runtime import RuntimeConfig, load_model

    return load_model((0, ""), DEMO / "model.onnx", RuntimeConfig(intra_op_threads=threads))


def _preprocess(data: bytes, config: dict) -> np.ndarray:
    from apps.inference.preprocessing import decode_image, image_to_array

    decoded = decode_image(data, max_pixels=MAX_PIXELS, preprocessing=config)
    return image_to_array(decoded.image, config, max_pixels=MAX_PIXELS)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def compare(model: Any, data: list[bytes], repeat: int) -> dict[str, Any]:
    """Preprocess p50 for both decoders (alternating, their order swapped every pass),
    inference p50, and how far their answers are apart."""
    name = model.input_names[0]
    times: dict[str, list[float]] = {"full": [], "fast": []}
    inference: list[float] = []
    answers: dict[str, list[np.ndarray]] = {"full": [], "fast": []}
    for step in range(repeat):
        for index, item in enumerate(data):
            order = ("full", "fast") if (index + step) % 2 == 0 else ("fast", "full")
            for which in order:
                started = time.perf_counter()
                array = _preprocess(item, CONFIGS[which])
                times[which].append((time.perf_counter() - started) * 1000)
                if step == 0:
                    started = time.perf_counter()
                    logits = next(iter(model.run({name: array[None]}).values()))[0]
                    inference.append((time.perf_counter() - started) * 1000)
                    answers[which].append(_softmax(logits))
    full, fast = np.stack(answers["full"]), np.stack(answers["fast"])
    rows = np.arange(len(full))
    flipped = np.flatnonzero(full.argmax(axis=1) != fast.argmax(axis=1))
    # For each flip: how near a tie it was in the full decode's answer (its top-1 score minus
    # its score for the class the fast decode chose).
    margins = full[rows, full.argmax(axis=1)] - full[rows, fast.argmax(axis=1)]
    return {
        "images": len(data),
        "full_p50": statistics.median(times["full"]),
        "fast_p50": statistics.median(times["fast"]),
        "inference_p50": statistics.median(inference),
        "top1_agree": int((full.argmax(axis=1) == fast.argmax(axis=1)).sum()),
        "softmax_max_diff": float(np.abs(full - fast).max()),
        "flip_margins": [round(float(margins[i]), 4) for i in flipped],
    }


def _limit_worker(seconds: float, paths: list[str], config: dict, barrier: Any, result: Any) -> None:
    sys.path.insert(0, str(ROOT))
    model = _load_demo_model()
    photos = [Path(p).read_bytes() for p in paths]
    name = model.input_names[0]
    model.run({name: _preprocess(photos[0], config)[None]})  # untimed: imports, first allocations
    barrier.wait()  # neither process measures while the other is still loading
    latencies, count, deadline = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        model.run({name: _preprocess(photos[count % len(photos)], config)[None]})
        latencies.append((time.perf_counter() - started) * 1000)
        count += 1
    result.put((count, latencies))


def limit(paths: list[Path], config: dict, seconds: float, processes: int = 2) -> dict[str, float]:
    """bench/serving.py's physical limit (2 processes x 1 thread, decode + preprocess +
    inference, no HTTP) on these photos, decoded with this config; the processes start
    measuring together (as bench/jobs.py's raw throughput does)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    barrier = context.Barrier(processes)
    workers = [
        context.Process(target=_limit_worker, args=(seconds, [str(p) for p in paths], config, barrier, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(value for _, values in results for value in values)
    return {"throughput": sum(count for count, _ in results) / seconds, "p50": statistics.median(latencies)}


def other_formats(model: Any, repeat: int) -> dict[str, dict]:
    """The 12 MP enlarged demo photos as progressive JPEGs (drafted, like the baseline ones),
    and as PNG, WebP, BMP and GIF: decoded whole either way, then resized directly (full) or
    box-reduced first (fast)."""
    pictures = [Image.open(io.BytesIO(images.enlarged_photo(p.stem))).convert("RGB") for p in serving.PHOTOS]
    report = {}
    formats = {
        "progressive": ("JPEG", {"quality": 90, "progressive": True}),
        "PNG": ("PNG", {}),
        "WEBP": ("WEBP", {"quality": 90}),
        "BMP": ("BMP", {}),
        "GIF": ("GIF", {}),
    }
    for label, (fmt, params) in formats.items():
        data = [images.encode(picture, fmt, **params) for picture in pictures]
        report[label] = {**describe(data), **compare(model, data, repeat)}
        print(f"  in process, 12 MP {label}: {_in_process_line(report[label])}", flush=True)
    return report


def _in_process_line(r: dict) -> str:
    return (
        f"preprocess p50 {r['full_p50']:.1f} -> {r['fast_p50']:.1f} ms, "
        f"inference {r['inference_p50']:.1f} ms, "
        f"top-1 {r['top1_agree']}/{r['images']}, softmax diff {r['softmax_max_diff']:.4f}"
        + (f" (flips: full-decode margins {r['flip_margins']})" if r["flip_margins"] else "")
    )


# --- Served ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def sending(paths: list[Path]):
    """bench/serving.py's wrk script and bench/jobs.py's archives send these photos."""
    saved = serving.PHOTOS, jobs.PHOTOS
    serving.PHOTOS = jobs.PHOTOS = list(paths)
    try:
        yield
    finally:
        serving.PHOTOS, jobs.PHOTOS = saved


def register_full_decoder(manage: Any, workdir: Path) -> None:
    """The demo model again, as "effnet-full", with fast_decode false (as a version made before
    the option has it after migration registry 0003)."""
    config = workdir / "preprocessing-full.json"
    config.write_text(json.dumps(CONFIGS["full"]))
    args = register_demo(MODELS["full"], "production")
    args[args.index("--preprocessing") + 1] = str(config)
    manage(*args)


def check_registered(manage: Any) -> dict[str, bool]:
    """Each served model's stored fast_decode: "effnet" must have it on from the default."""
    script = (
        "import json; from apps.registry.models import ModelVersion as V; print(json.dumps({v.model.name:"
        " v.preprocessing.get('fast_decode') for v in V.objects.select_related('model')}))"
    )
    stored = json.loads(manage("shell", "--no-imports", "-c", script).strip().splitlines()[-1])
    for which, model in MODELS.items():
        if stored.get(model) is not (which == "fast"):
            raise RuntimeError(f"{model} has fast_decode {stored.get(model)!r}")
    return stored


def served(rungs: list[Rung], args: argparse.Namespace, workdir: Path) -> list[dict]:
    platform = Platform(workdir / "served")
    key = platform.set_up()
    rounds: list[dict] = []
    try:
        register_full_decoder(platform.manage, workdir)
        check_registered(platform.manage)
        port = 19000 + os.getpid() % 1000
        server_log = workdir / "gunicorn.log"
        with _output_to(server_log):
            process = platform.serve(SERVERS["sync-2"], port)
        failed = 0
        try:
            for model in MODELS.values():  # warm-up: each worker loads both versions
                run_wrk(port, model, key, 4, 3)
            for round_ in range(args.rounds):
                row: dict[str, dict] = {}
                for rung in rungs:
                    order = ("full", "fast") if round_ % 2 == 0 else ("fast", "full")
                    row[rung.name] = {}
                    for which in order:
                        measured = limit(rung.paths, CONFIGS[which], args.limit_seconds)
                        with sending(rung.paths):
                            result = run_wrk(port, MODELS[which], key, CONCURRENCY, args.duration)
                        if result["non2xx"] or result["errors"]:
                            # Counted, not thrown away: req/s below counts answered requests only.
                            failed += result["non2xx"] + result["errors"]
                            answer = _one_request(port, MODELS[which], key, rung.paths[0])
                            print(f"  FAILED REQUESTS, {rung.name} {which}: {result}; one more: {answer}")
                        result["throughput"] = (result["requests"] - result["non2xx"]) / result["seconds"]
                        result["limit"] = measured["throughput"]
                        result["ratio"] = result["throughput"] / measured["throughput"]
                        row[rung.name][which] = result
                        print(
                            f"  round {round_ + 1} {rung.name:<15} {which:<4} "
                            f"{result['throughput']:6.1f} req/s (limit {measured['throughput']:6.1f}: "
                            f"{result['ratio']:.2f}), p99 {result['p99']:.0f} ms",
                            flush=True,
                        )
                rounds.append(row)
        finally:
            process.terminate()
            process.wait()
            if failed:
                errors = [line for line in server_log.read_text().splitlines() if "rror" in line]
                print(
                    f"{failed} failed requests; the server's errors:",
                    *errors[-20:],
                    sep="\n",
                    file=sys.stderr,
                )
    finally:
        platform.tear_down()
    return rounds


@contextlib.contextmanager
def _output_to(path: Path):
    """bench/serving.py's Platform.serve with the server's output kept in `path` (it sends
    it to /dev/null), to say why a request failed."""
    popen = subprocess.Popen
    log = path.open("ab")

    def keeping(*args, **kwargs):
        return popen(*args, **{**kwargs, "stdout": log, "stderr": subprocess.STDOUT})

    subprocess.Popen = keeping
    try:
        yield
    finally:
        subprocess.Popen = popen


def _one_request(port: int, model: str, key: str, photo: Path) -> str:
    """What one prediction answers now, to say why a run had errors."""
    try:
        response = requests.post(
            f"http://127.0.0.1:{port}/api/v1/models/{model}/predict",
            headers={"X-API-Key": key},
            files={"image": ("photo.jpg", photo.read_bytes(), "image/jpeg")},
            timeout=30,
        )
    except requests.RequestException as exc:
        return repr(exc)
    return f"{response.status_code} {response.text[:300]}"


class LadderStack(jobs.Stack):
    """bench/jobs.py's stack, submitting to a chosen model."""

    model = MODELS["fast"]

    def submit(self, archive: bytes) -> str:
        response = requests.post(
            f"{self.url}/api/v1/jobs/",
            headers={"X-API-Key": self.key},
            data={"model": self.model},
            files={"archive": ("photos.zip", archive, "application/zip")},
            timeout=600,
        )
        if response.status_code != 202:
            raise RuntimeError(f"submit: {response.status_code} {response.text[:500]}")
        return response.json()["id"]


def batch_jobs(rungs: list[Rung], args: argparse.Namespace, workdir: Path) -> list[dict]:
    counts = {rung.name: max(8, int(JOB_IMAGES[rung.name] * args.job_scale)) for rung in rungs}
    jobs.REDIS_DB = JOB_REDIS_DB
    (workdir / "jobs").mkdir()
    stack = LadderStack(workdir / "jobs", max(counts.values()))
    rounds: list[dict] = []
    try:
        stack.set_up()
        register_full_decoder(stack.manage, workdir)
        check_registered(stack.manage)
        stack.start_web(19500 + os.getpid() % 400)
        processes, names = stack.start_workers(1)
        try:
            for model in MODELS.values():  # the worker loads each version on its first job
                stack.model = model
                jobs.warm_up(stack, names)
            for round_ in range(args.rounds):
                row: dict[str, dict] = {}
                for rung in rungs:
                    with sending(rung.paths):
                        archive = jobs.zip_of_photos(counts[rung.name])
                    row[rung.name] = {}
                    for which in ("full", "fast") if round_ % 2 == 0 else ("fast", "full"):
                        stack.model = MODELS[which]
                        result = jobs.run_jobs(stack, names, [archive], timeout=1800)
                        row[rung.name][which] = {k: result[k] for k in ("images", "throughput", "seconds")}
                        print(
                            f"  round {round_ + 1} job {rung.name:<15} {which:<4} "
                            f"{result['throughput']:6.1f} img/s "
                            f"({result['images']} in {result['seconds']:.1f} s)",
                            flush=True,
                        )
                rounds.append(row)
        finally:
            stack.stop(processes)
            stack.processes = [p for p in stack.processes if p not in processes]
    except BaseException:
        for log in sorted((workdir / "jobs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        stack.tear_down()
    return rounds


# --- Main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="served and job rounds; medians are reported")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per served run")
    parser.add_argument("--limit-seconds", type=float, default=4.0, help="seconds per limit measurement")
    parser.add_argument("--repeat", type=int, default=3, help="in-process passes over each rung's photos")
    parser.add_argument("--job-scale", type=float, default=1.0, help="scales the images per batch job")
    parser.add_argument("--skip-served", action="store_true", help="no gunicorn / wrk part")
    parser.add_argument("--skip-jobs", action="store_true", help="no batch-job part")
    args = parser.parse_args()
    if not args.skip_served and shutil.which("wrk") is None:
        sys.exit("the served part needs wrk: apt-get install wrk (or --skip-served)")
    workdir = Path(tempfile.mkdtemp(prefix="mlp-ladder-"))
    report: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    try:
        rungs = build_rungs(workdir)
        model = _load_demo_model()
        report["in_process"] = {}
        for rung in rungs:
            result = {**describe(rung.answers), **compare(model, rung.answers, args.repeat)}
            for which in ("full", "fast"):
                result[f"limit_{which}"] = limit(rung.paths, CONFIGS[which], args.limit_seconds)["throughput"]
            report["in_process"][rung.name] = result
            print(f"  in process, {rung.name}: {_in_process_line(result)}", flush=True)
        report["other_formats"] = other_formats(model, args.repeat)
        if not args.skip_served:
            report["served"] = served(rungs, args, workdir)
        if not args.skip_jobs:
            report["jobs"] = batch_jobs(rungs, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["load_after"] = os.getloadavg()
    print_report(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"ladder-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2))


def _median(rounds: list[dict], rung: str, which: str, key: str) -> float:
    return statistics.median(r[rung][which][key] for r in rounds)


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nIn process (one core; demo model, resize 256 / crop 224; p50 per image; limit = 2 processes"
        f" x 1 thread, img/s; load average {report['load_before'][0]:.1f} before, "
        f"{report['load_after'][0]:.1f} after):"
    )
    header = (
        "MP",
        "KB",
        "full ms",
        "fast ms",
        "x",
        "infer ms",
        "fast/inf",
        "top-1",
        "softmax",
        "lim full",
        "lim fast",
    )
    print(f"  {'rung':<18}" + "".join(f"{h:>9}" for h in header))
    for name, r in {
        **report["in_process"],
        **{f"12 MP {k}": v for k, v in report["other_formats"].items()},
    }.items():
        print(
            f"  {name:<18}{r['megapixels']:9.1f}{r['kilobytes']:9.0f}{r['full_p50']:9.1f}{r['fast_p50']:9.1f}"
            f"{r['full_p50'] / r['fast_p50']:9.2f}{r['inference_p50']:9.1f}"
            f"{r['fast_p50'] / r['inference_p50']:9.2f}"
            f"{r['top1_agree']:>6}/{r['images']:<2}{r['softmax_max_diff']:9.4f}"
            + (f"{r['limit_full']:9.1f}{r['limit_fast']:9.1f}" if "limit_full" in r else "")
        )
    served, job_rounds = report.get("served"), report.get("jobs")
    if served:
        print(
            f"\nServed, concurrency {CONCURRENCY} (sync 2; medians of {len(served)} rounds, A/B alternating):"
        )
        header = ("full r/s", "fast r/s", "x", "full p99", "fast p99", "full rat", "fast rat", "drop")
        print(f"  {'rung':<16}" + "".join(f"{h:>9}" for h in header))
        for rung in served[0]:
            full, fast = (_median(served, rung, w, "throughput") for w in ("full", "fast"))
            drop = statistics.median(r[rung]["full"]["ratio"] - r[rung]["fast"]["ratio"] for r in served)
            print(
                f"  {rung:<16}{full:9.1f}{fast:9.1f}{fast / full:9.2f}"
                f"{_median(served, rung, 'full', 'p99'):9.0f}{_median(served, rung, 'fast', 'p99'):9.0f}"
                f"{_median(served, rung, 'full', 'ratio'):9.2f}{_median(served, rung, 'fast', 'ratio'):9.2f}"
                f"{drop:+9.3f}"
            )
        print(
            "  rat = req/s / the limit measured with the same decoder just before; drop = full rat - fast rat"
        )
        failures = {
            f"{rung} {which}": sum(r[rung][which]["non2xx"] + r[rung][which]["errors"] for r in served)
            for rung in served[0]
            for which in ("full", "fast")
        }
        if any(failures.values()):
            print(f"  failed requests (answered req/s only above): {failures}")
    if job_rounds:
        print(f"\nBatch jobs (1 Celery worker, concurrency 1; medians of {len(job_rounds)} rounds):")
        print(f"  {'rung':<16}{'images':>9}{'full i/s':>9}{'fast i/s':>9}{'x':>9}")
        for rung in job_rounds[0]:
            full, fast = (_median(job_rounds, rung, w, "throughput") for w in ("full", "fast"))
            print(
                f"  {rung:<16}{job_rounds[0][rung]['full']['images']:9d}"
                f"{full:9.1f}{fast:9.1f}{fast / full:9.2f}"
            )
    print_targets(report)


def print_targets(report: dict[str, Any]) -> None:
    print("\nTargets (met only if the measured value is within the bound as measured, not rounded):")
    twelve = report["in_process"]["12 MP"]
    ratio = twelve["fast_p50"] / twelve["inference_p50"]
    bound = TARGETS["preprocess_vs_inference"]
    print(
        f"  enlarged 12 MP: fast preprocess p50 / inference p50 = {ratio:.2f} "
        f"(at most {bound}): {ratio <= bound}"
    )
    worst = max(
        r["softmax_max_diff"] for r in [*report["in_process"].values(), *report["other_formats"].values()]
    )
    bound = TARGETS["softmax"]
    print(f"  largest softmax difference on the ladder = {worst:.4f} (at most {bound}): {worst <= bound}")
    if report.get("served"):
        served = report["served"]
        speedup = _median(served, "12 MP", "fast", "throughput") / _median(
            served, "12 MP", "full", "throughput"
        )
        bound = TARGETS["served_speedup"]
        print(
            f"  enlarged 12 MP served at c16: fast / full req/s = {speedup:.2f} "
            f"(at least {bound}): {speedup >= bound}"
        )
        drop = statistics.median(r["demo"]["full"]["ratio"] - r["demo"]["fast"]["ratio"] for r in served)
        bound = TARGETS["small_ratio_drop"]
        print(
            f"  demo photos: ratio to the limit, full - fast = {drop:+.3f} (at most {bound}): {drop <= bound}"
        )


if __name__ == "__main__":
    main()
