"""python manage.py optimize --model NAME --number N --recipe RECIPE [options]

Runs the optimization in this process (as `register_model` validates in-process) and
prints the report. The API does the same on a worker (POST .../versions/N/optimize).
"""

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ApplicationError
from apps.optimization import recipes
from apps.optimization.models import EvaluationSet, OptimizationRun
from apps.optimization.services.lifecycle import optimization_request, optimization_run
from apps.registry.models import ModelVersion


class Command(BaseCommand):
    help = "Optimize a version with a recipe, register the result as a new version, and print the report."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", required=True)
        parser.add_argument("--number", required=True, type=int, help="the version number")
        parser.add_argument("--recipe", required=True, choices=recipes.RECIPES)
        parser.add_argument("--evaluation-set")
        parser.add_argument("--calibration-set")
        parser.add_argument("--calibration-method", choices=sorted(recipes.CALIBRATION_METHODS))
        parser.add_argument("--max-top1-drop", type=float)
        parser.add_argument("--time-budget", type=float, help="auto-int8's time box in seconds")
        parser.add_argument("--json", action="store_true", help="print the whole report as JSON")

    def handle(self, *args: object, **options: Any) -> None:
        version = ModelVersion.objects.filter(model__name=options["model"], number=options["number"]).first()
        if version is None:
            raise CommandError(f"No version {options['number']} of '{options['model']}'.")
        sets = {}
        for key in ("evaluation_set", "calibration_set"):
            if options[key]:
                sets[key] = EvaluationSet.objects.filter(model=version.model, name=options[key]).first()
                if sets[key] is None:
                    raise CommandError(
                        f"Model '{version.model.name}' has no evaluation set '{options[key]}'."
                    )
        params = {
            key: options[key] for key in ("calibration_method", "max_top1_drop") if options[key] is not None
        }
        if options["time_budget"] is not None:
            params["time_budget_seconds"] = options["time_budget"]
        try:
            run = optimization_request(
                version=version,
                recipe=str(options["recipe"]),
                user=version.model.owner,
                params=params,
                **sets,
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        optimization_run(run_id=str(run.pk))
        run = OptimizationRun.objects.get(pk=run.pk)
        if run.status != OptimizationRun.Status.SUCCEEDED:
            if run.report.get("search"):  # auto-int8 that found nothing: what it tried
                shown = (
                    json.dumps(run.report, indent=2)
                    if options["json"]
                    else describe_search(run.report["search"])
                )
                self.stdout.write(shown)
            raise CommandError(f"{run.error_code}: {run.error_message}")
        if options["json"]:
            self.stdout.write(json.dumps(run.report, indent=2))
            return
        self.stdout.write(describe(run))


def describe(run: OptimizationRun) -> str:
    report = run.report
    perf = report["performance"]
    lines = [
        f"{run.model.name}: {run.recipe} of v{report['source_version']} -> v{report['result_version']}",
        f"  {'':<24}{'source':>12}{'result':>12}",
    ]
    rows = [
        ("size (MB)", lambda p: f"{p['size_bytes'] / 1e6:.2f}"),
        ("load (ms)", lambda p: f"{p['load_ms']:.0f}"),
        ("latency p50, batch 1 (ms)", lambda p: f"{p['latency_p50_ms']:.2f}"),
        ("latency p95, batch 1 (ms)", lambda p: f"{p['latency_p95_ms']:.2f}"),
        (
            f"throughput, batch {perf['source']['throughput_batch']} (/s)",
            lambda p: f"{p['throughput_items_per_s']:.1f}",
        ),
    ]
    for name, show in rows:
        lines.append(f"  {name:<24}{show(perf['source']):>12}{show(perf['result']):>12}")
    accuracy = report.get("accuracy")
    if accuracy:
        for key in ("top1", "top5"):
            before, after = accuracy["source"][key], accuracy["result"][key]
            if before is not None:
                lines.append(f"  {key + ' accuracy (%)':<24}{before:>12}{after:>12}")
        interval = accuracy.get("top1_agreement_interval95")
        lines.append(
            f"  top-1 agreement with the source: {accuracy['top1_agreement']} % of {accuracy['items']} items"
            + (f" (95% interval {interval[0]}-{interval[1]} %)" if interval else "")
        )
    lines.append(f"  size ratio {report['size_ratio']}, latency ratio (p50) {report['latency_ratio_p50']}")
    lines.append(f"  gate: {report['gate']['reason'] if 'reason' in report['gate'] else report['gate']}")
    if report.get("search"):
        lines.append(describe_search(report["search"]))
    return "\n".join(lines)


def describe_search(search: dict) -> str:
    """auto-int8's record: each candidate tried, and the one chosen."""
    lines = [
        f"  auto-int8 search: {len(search['trials'])} candidates in {search['seconds']} s"
        f" (time box {search['time_box_seconds']} s, stopped by {search['stopped_by']});"
        f" chosen: {search.get('chosen', 'none')}",
        f"  {'candidate':<22}{'float nodes':>12}{'size':>8}{'p50 ratio':>10}{'agreement':>11}"
        "  95% interval  gate",
    ]
    for trial in search["trials"]:
        if "error" in trial:
            lines.append(f"  {trial['name']:<22} refused: {trial['error'][:80]}")
            continue
        low, high = trial["top1_agreement_interval95"]
        lines.append(
            f"  {trial['name']:<22}{len(trial['excluded']):>12}{trial['size_ratio']:>8.3f}"
            f"{trial['latency_ratio_p50']:>10.3f}{trial['top1_agreement']:>10.2f}%  {low:>5.1f}-{high:<5.1f}%"
            f"  {'pass' if trial['passed'] else 'fail'}"
        )
    return "\n".join(lines)
