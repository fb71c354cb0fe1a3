"""The model page of the console: its versions (with status that refreshes by itself while
a version is on its way), aliases and their history, and the actions a maintainer takes
from a version's row (set an alias, archive). Display helpers shared with the version list.

The views here are admin views (wrapped by `admin_site.admin_view`, so staff only) and go
through the registry's services, as the API does.
"""

from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from apps.accounts.authenticated import request_user
from apps.core.exceptions import ApplicationError
from apps.registry import services
from apps.registry.models import MLModel, ModelAliasHistory, ModelVersion

# Statuses a version leaves by itself (a worker is at it): the page polls while one shows.
MOVING = frozenset({"pending", "validating", "converting"})
HISTORY_ROWS = 20


def size_text(size: int | None) -> str:
    if not size:
        return "-"
    amount: float = size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return "-"  # unreachable: the loop returns at GiB


def p50_text(version: ModelVersion) -> str:
    p50 = (version.metrics or {}).get("latency_ms", {}).get("p50")
    return f"{p50:.2f} ms" if isinstance(p50, int | float) else "-"


def status_badge(version: ModelVersion) -> str:
    return format_html('<span class="mlp-status mlp-status-{}">{}</span>', version.status, version.status)


def origin_text(version: ModelVersion) -> str:
    """Where a version came from: optimized from another version, or converted from a format."""
    if version.derived_from is not None:
        recipe = (version.optimization or {}).get("recipe", "")
        return f"v{version.derived_from.number} ({recipe})" if recipe else f"v{version.derived_from.number}"
    converted = getattr(version, "converted_from", None) or {}
    return f"converted from {converted['format']}" if converted.get("format") else ""


def signature_table(signature: dict[str, Any]) -> str:
    rows = [
        (
            kind,
            arg.get("name", ""),
            arg.get("dtype", ""),
            "[" + ", ".join(map(str, arg.get("shape", []))) + "]",
        )
        for kind in ("inputs", "outputs")
        for arg in signature.get(kind, [])
    ]
    if not rows:
        return "-"
    body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
    return format_html(
        '<table class="mlp-table"><thead><tr><th>kind</th><th>name</th><th>type</th><th>shape</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        body,
    )


def metrics_table(metrics: dict[str, Any]) -> str:
    """Nested metrics as a two-column table: `latency_ms.p50` → 0.412."""
    rows = list(_flatten(metrics))
    if not rows:
        return "-"
    return format_html(
        '<table class="mlp-table"><tbody>{}</tbody></table>',
        format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
    )


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and not all(isinstance(v, str | int | float) for v in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, ", ".join(map(str, value)) if isinstance(value, list) else value


def versions_of(model: MLModel) -> list[ModelVersion]:
    return list(model.versions.select_related("derived_from").prefetch_related("aliases").order_by("-number"))


def version_row(request: HttpRequest, version: ModelVersion) -> str:
    """One row of the model page's version table (also sent to the page as it polls)."""
    context = {
        "version": version,
        "status": status_badge(version),
        "size": size_text(version.size_bytes),
        "p50": p50_text(version),
        "origin": origin_text(version),
        "aliases": [alias.name for alias in version.aliases.all()],
        "moving": version.status in MOVING,
        "change_url": reverse("admin:registry_modelversion_change", args=[version.pk]),
        "set_alias_url": reverse("admin:registry_mlmodel_set_alias", args=[version.model_id]),
        "archive_url": reverse("admin:registry_mlmodel_archive", args=[version.model_id]),
        "predictions_url": reverse("admin:inference_prediction_changelist")
        + f"?model_name={version.model.name}&version_number={version.number}",
        "jobs_url": reverse("admin:jobs_batchjob_changelist")
        + f"?model_name={version.model.name}&version_number={version.number}",
    }
    return render_to_string("admin/registry/mlmodel/version_row.html", context, request=request)


def model_page_context(request: HttpRequest, model: MLModel) -> dict[str, Any]:
    versions = versions_of(model)
    return {
        "version_rows": [version_row(request, v) for v in versions],
        "versions_json_url": reverse("admin:registry_mlmodel_versions", args=[model.pk]),
        "alias_names": sorted(
            {a.name for v in versions for a in v.aliases.all()} | {"production", "staging"}
        ),
        "history": ModelAliasHistory.objects.filter(model=model).select_related("changed_by")[:HISTORY_ROWS],
        "history_url": reverse("admin:registry_modelaliashistory_changelist")
        + f"?model__id__exact={model.pk}",
    }


def versions_json(request: HttpRequest, model_id: int) -> JsonResponse:
    """The version rows of a model, for the page's polling: status and the row's HTML."""
    model = get_object_or_404(MLModel, pk=model_id)
    rows = [
        {"id": v.pk, "status": v.status, "moving": v.status in MOVING, "html": version_row(request, v)}
        for v in versions_of(model)
    ]
    return JsonResponse({"versions": rows})


@require_POST
def set_alias(request: HttpRequest, model_id: int) -> HttpResponse:
    """Point an alias at a version, from the version's row."""
    model = get_object_or_404(MLModel, pk=model_id)
    version = get_object_or_404(ModelVersion, pk=request.POST.get("version"), model=model)
    name = request.POST.get("alias", "").strip()
    try:
        services.alias_set(model=model, name=name, version=version, user=request_user(request))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Alias {name} of {model.name} now points at version {version.number}.")
    return HttpResponseRedirect(reverse("admin:registry_mlmodel_change", args=[model.pk]))


@require_POST
def archive_version(request: HttpRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(MLModel, pk=model_id)
    version = get_object_or_404(ModelVersion, pk=request.POST.get("version"), model=model)
    try:
        services.model_version_archive(version=version)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Version {version.number} archived.")
    return HttpResponseRedirect(reverse("admin:registry_mlmodel_change", args=[model.pk]))
