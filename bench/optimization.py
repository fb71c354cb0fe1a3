"""Optimization benchmark: the demo EfficientNet-Lite0 quantized to int8 (and the digits
classifier, when demo/digits exists), with the platform's own report as the numbers.

    .venv/bin/python bench/optimization.py [--recipes dynamic-int8,static-int8]

Runs in a scratch environment (a temporary SQLite database and model store; no server
needed): registers the demo model and its evaluation set (demo/efficientnet_lite0/
eval-set.zip, see its eval-set.md), optimizes it with each recipe, and prints the report:
size as a fraction of fp32 and the int8/fp32 latency ratio at batch 1, both measured in
the same process and run, interleaved. Writes bench/results/optimization-<time>.json.
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", default="dynamic-int8,static-int8")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlp-bench-opt-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlplatform.settings.local",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "MODEL_STORE_ROOT": str(work / "store"),
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)

    def manage(*command: str, fatal: bool = True) -> str:
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if result.returncode and fatal:
            sys.exit(f"manage.py {' '.join(command)} failed:\n{result.stderr[-3000:]}")
        if result.returncode:  # an optimization the tools refused: report their reason
            raise RuntimeError(result.stderr.strip().splitlines()[-1])
        return result.stdout

    manage("migrate", "--noinput", "-v0")
    manage(*CREATE_SUPERUSER)
    manage(*register_demo(alias=None))
    manage(
        "add_evaluation_set", "--model", "effnet", "--name", "photos", "--file", str(DEMO / "eval-set.zip")
    )
    results, failures = {}, {}
    for recipe in args.recipes.split(","):
        options = ["--evaluation-set", "photos"]
        if recipe == "static-int8":
            options += ["--calibration-set", "photos"]
        report = json.loads(
            manage("optimize", "--model", "effnet", "--number", "1", "--recipe", recipe, *options, "--json")
        )
        results[f"effnet {recipe}"] = report
    if (DIGITS / "model.onnx").exists():
        manage(
            "register_model",
            "--name",
            "digits",
            "--file",
            str(DIGITS / "model.onnx"),
            "--labels",
            str(DIGITS / "labels.txt"),
            "--task",
            "tensor",
        )
        manage(
            "add_evaluation_set", "--model", "digits", "--name", "test", "--file", str(DIGITS / "test.jsonl")
        )
        for recipe in ("dynamic-int8", "static-int8"):
            options = (
                ["--evaluation-set", "test", "--calibration-set", "test"]
                if recipe == "static-int8"
                else ["--evaluation-set", "test"]
            )
            try:
                output = manage(
                    "optimize",
                    "--model",
                    "digits",
                    "--number",
                    "1",
                    "--recipe",
                    recipe,
                    *options,
                    "--json",
                    fatal=False,
                )
            except RuntimeError as exc:
                failures[f"digits {recipe}"] = str(exc)
                continue
            results[f"digits {recipe}"] = json.loads(output)
    header = ["size", "p50 ratio", "fp32 p50", "int8 p50", "top1 fp32", "top1 int8", "agree", "gate"]
    print(f"\n{'model, recipe':<24}" + "".join(f"{h:>11}" for h in header))
    for name, report in results.items():
        perf, accuracy = report["performance"], report.get("accuracy", {})
        cells = [
            f"{report['size_ratio']:.3f}",
            f"{report['latency_ratio_p50']:.3f}",
            f"{perf['source']['latency_p50_ms']:.2f} ms",
            f"{perf['result']['latency_p50_ms']:.2f} ms",
            _pct(accuracy.get("source", {}).get("top1")),
            _pct(accuracy.get("result", {}).get("top1")),
            _pct(accuracy.get("top1_agreement")),
            "pass" if report["gate"]["passed"] else "FAIL",
        ]
        print(f"{name:<24}" + "".join(f"{c:>11}" for c in cells))
    for name, reason in failures.items():
        print(f"{name:<24} refused by the tools: {reason[:200]}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    (out / f"optimization-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({**results, "failures": failures}, indent=2)
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


if __name__ == "__main__":
    main()
