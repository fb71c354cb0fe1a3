"""Optimization benchmark: the demo EfficientNet-Lite0 quantized to int8 (and the digits
classifier, when demo/digits exists), with the platform's own reports as the numbers.

    .venv/bin/python bench/optimization.py [--recipes auto-int8,static-int8,dynamic-int8]
                                           [--time-budget SECONDS]

Runs in a scratch environment (a temporary SQLite database and model store; no server
needed): registers the demo model and its evaluation set (demo/efficientnet_lite0/
eval-set.zip, 214 views of 6 photos, see its eval-set.md), optimizes it with each recipe
through `manage.py optimize`, and prints the reports: size as a fraction of fp32 and the
int8/fp32 p50 latency ratio at batch 1, both measured in the same process with the runs
interleaved (medians), and the top-1 agreement with its Wilson 95 % interval. For
auto-int8 it prints every candidate of the search, and checks issue 19's targets: size
<= 0.35 of fp32, p50 <= 0.65 of fp32, the default 1-point gate passed. A search that finds
no passing candidate is reported with its best candidate. Writes bench/results/
optimization-<time>.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CREATE_SUPERUSER, register_demo  # bench/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "efficientnet_lite0"
DIGITS = ROOT / "demo" / "digits"
TARGETS = {"size_ratio": 0.35, "latency_ratio_p50": 0.65}


def scratch_env(work: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlplatform.settings.local",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "MODEL_STORE_ROOT": str(work / "store"),
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    return env


def manage(env: dict[str, str], *command: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *command], env=env, cwd=ROOT, capture_output=True, text=True
    )
    return result.returncode, result.stdout, result.stderr


def must(env: dict[str, str], *command: str) -> str:
    code, out, err = manage(env, *command)
    if code:
        sys.exit(f"manage.py {' '.join(command)} failed:\n{err[-3000:]}")
    return out


def optimize(env: dict[str, str], model: str, recipe: str, options: list[str]) -> dict:
    """The run's report; a failed run's error (and, for auto-int8, its search) under `failed`."""
    code, out, err = manage(env, "optimize", "--model", model, "--number", "1", "--recipe", recipe,
                            *options, "--json")  # fmt: skip
    report = json.loads(out[out.index("{") :]) if "{" in out else {}
    if code == 0:
        return report
    reason = err.strip().splitlines()[-1] if err.strip() else "no reason given"
    return {**report, "failed": reason}


def setup(env: dict[str, str]) -> None:
    must(env, "migrate", "--noinput", "-v0")
    must(env, *CREATE_SUPERUSER)
    must(env, *register_demo(alias=None))
    must(
        env,
        "add_evaluation_set",
        "--model",
        "effnet",
        "--name",
        "photos",
        "--file",
        str(DEMO / "eval-set.zip"),
    )
    if (DIGITS / "model.onnx").exists():
        must(env, "register_model", "--name", "digits", "--file", str(DIGITS / "model.onnx"),
             "--labels", str(DIGITS / "labels.txt"), "--task", "tensor")  # fmt: skip
        must(
            env,
            "add_evaluation_set",
            "--model",
            "digits",
            "--name",
            "test",
            "--file",
            str(DIGITS / "test.jsonl"),
        )


def options_for(recipe: str, evaluation_set: str, budget: float | None) -> list[str]:
    options = ["--evaluation-set", evaluation_set]
    if recipe == "static-int8":
        options += ["--calibration-set", evaluation_set]
    if recipe == "auto-int8" and budget is not None:
        options += ["--time-budget", str(budget)]
    return options


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", default="auto-int8,static-int8")
    parser.add_argument(
        "--time-budget", type=float, help="auto-int8's time box (default: the setting, 900 s)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlp-bench-opt-"))
    env = scratch_env(work)
    setup(env)
    results = {}
    for recipe in args.recipes.split(","):
        results[f"effnet {recipe}"] = optimize(
            env, "effnet", recipe, options_for(recipe, "photos", args.time_budget)
        )
        if (DIGITS / "model.onnx").exists():
            results[f"digits {recipe}"] = optimize(env, "digits", recipe, options_for(recipe, "test", None))
    shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if "effnet auto-int8" in results:
        print_search(results["effnet auto-int8"])
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"optimization-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


def print_table(results: dict[str, dict]) -> None:
    header = ["size", "p50 ratio", "fp32 p50", "int8 p50", "agree", "95% interval", "gate"]
    print(f"\n{'model, recipe':<24}" + "".join(f"{h:>13}" for h in header))
    for name, report in results.items():
        if "performance" not in report:
            print(f"{name:<24} failed: {report['failed'][:160]}")
            continue
        perf, accuracy = report["performance"], report.get("accuracy", {})
        interval = accuracy.get("top1_agreement_interval95")
        cells = [
            f"{report['size_ratio']:.3f}",
            f"{report['latency_ratio_p50']:.3f}",
            f"{perf['source']['latency_p50_ms']:.2f} ms",
            f"{perf['result']['latency_p50_ms']:.2f} ms",
            _pct(accuracy.get("top1_agreement")),
            f"{interval[0]:.1f}-{interval[1]:.1f}%" if interval else "-",
            "pass" if report["gate"]["passed"] else "FAIL",
        ]
        print(f"{name:<24}" + "".join(f"{c:>13}" for c in cells))


def print_search(report: dict) -> None:
    """auto-int8's candidates and issue 19's targets for the chosen one (or the best one)."""
    search = report.get("search")
    if not search:
        return
    print(f"\nauto-int8 search on the demo model: {len(search['trials'])} candidates, {search['seconds']} s "
          f"(time box {search['time_box_seconds']} s, stopped by {search['stopped_by']})")  # fmt: skip
    columns = f"{'float':>6}{'size':>8}{'p50 ratio':>11}{'agreement':>11}{'95% interval':>15}"
    print(f"  {'candidate':<18}{columns}  gate")
    for trial in search["trials"]:
        if "error" in trial:
            print(f"  {trial['name']:<18} refused: {trial['error'][:100]}")
            continue
        low, high = trial["top1_agreement_interval95"]
        print(f"  {trial['name']:<18}{len(trial['excluded']):>6}{trial['size_ratio']:>8.3f}"
              f"{trial['latency_ratio_p50']:>11.3f}{trial['top1_agreement']:>10.2f}%{low:>8.1f}-{high:.1f}%"
              f"  {'pass' if trial['passed'] else 'fail'}")  # fmt: skip
    sensitivity = search.get("sensitivity")
    if sensitivity:
        top = ", ".join(f"{node} {score:+.4f}" for node, score in sensitivity["ranking"][:5])
        print(f"  sensitivity ({sensitivity['method']}, KL on {sensitivity['items']} items, "
              f"{sensitivity['measured']} of {sensitivity['nodes']} nodes;"
              f" baseline {sensitivity['baseline_kl']}): {top}")  # fmt: skip
    measured = [t for t in search["trials"] if "top1_agreement" in t]
    chosen = search.get("chosen")
    if chosen:
        name, size, latency = chosen, report["size_ratio"], report["latency_ratio_p50"]
        passed = report["gate"]["passed"]
    elif measured:
        best = max(measured, key=lambda t: (t["top1_agreement"], -t["size_ratio"]))
        name, size, latency, passed = best["name"], best["size_ratio"], best["latency_ratio_p50"], False
    else:
        return
    print(f"\ntargets for {'the chosen' if chosen else 'the best (no candidate passed)'} candidate {name}:")
    for key, limit in TARGETS.items():
        value = size if key == "size_ratio" else latency
        print(f"  {key:<18} {value:.3f} (target <= {limit}): {'met' if value <= limit else 'NOT met'}")
    print(f"  gate (1 point)     {'passed' if passed else 'NOT passed'}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


if __name__ == "__main__":
    main()
