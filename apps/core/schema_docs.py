"""How the OpenAPI document reads: a tag per area, a one-line summary per operation, and
examples, as a drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS
"POSTPROCESSING_HOOKS"). What an operation accepts and answers stays with its view
(extend_schema, and `pagination_class` for a list answered as pages); this module only
labels and illustrates, so that Swagger UI and ReDoc are navigable."""

import re
from typing import Any

# Areas in the order a reader needs them: the registry first. (regex on the path, tag)
_AREAS: list[tuple[str, str]] = [
    (r"^/api/v1/models/[^/]+/predict", "Predictions"),
    (r"^/api/v1/predictions/", "Predictions"),
    (r"^/api/v1/models/[^/]+/versions/[^/]+/optimize", "Optimization"),
    (r"^/api/v1/(models/[^/]+/)?(optimizations|evaluation-sets)", "Optimization"),
    (r"^/api/v1/models/[^/]+/(aliases|alias-history)", "Aliases"),
    (r"^/api/v1/models/[^/]+/versions", "Versions"),
    (r"^/api/v1/models/[^/]+/rollouts", "Rollouts"),
    (r"^/api/v1/models", "Models"),
    (r"^/api/v1/jobs", "Jobs"),
    (r"^/api/v1/auth/", "Authentication"),
    (r"^/api/v1/(api-keys|me)", "Account and API keys"),
]

TAGS: list[dict[str, str]] = [
    {"name": "Models", "description": "Named models, who may use them (grants)."},
    {"name": "Versions", "description": "Upload ONNX files; each is validated on a worker."},
    {"name": "Aliases", "description": "Movable names (production, staging) for ready versions."},
    {"name": "Predictions", "description": "Predict, and the audit trail of predictions."},
    {"name": "Jobs", "description": "Batch jobs: many inputs, results when done."},
    {"name": "Rollouts", "description": "Canary rollouts on an alias."},
    {"name": "Optimization", "description": "Derived versions (quantization) and evaluation sets."},
    {"name": "Authentication", "description": "JSON Web Tokens from a username and password."},
    {"name": "Account and API keys", "description": "Your profile, usage, API keys, webhook secret."},
    {"name": "OAuth applications", "description": "OAuth 2.0 clients and their tokens."},
    {"name": "Open Inference Protocol (v2)", "description": "KServe / Triton compatible doors."},
]

SUMMARIES: dict[str, str] = {
    "models_list": "List models",
    "models_create": "Create a model",
    "models_retrieve": "Get a model",
    "models_update": "Update a model",
    "models_destroy": "Delete a model",
    "grants_list": "List a model's grants",
    "grants_set": "Grant a user a role on a model",
    "grants_destroy": "Remove a user's grant",
    "versions_list": "List a model's versions",
    "versions_create": "Upload a version",
    "versions_retrieve": "Get a version",
    "versions_update": "Update a version's notes, labels or preprocessing",
    "versions_archive": "Archive a version",
    "versions_optimize": "Derive an optimized version",
    "aliases_list": "List a model's aliases",
    "aliases_retrieve": "Get an alias",
    "aliases_set": "Set or move an alias",
    "aliases_destroy": "Delete an alias",
    "alias_history_list": "List alias changes",
    "models_predict": "Predict with a model",
    "predictions_list": "List recorded predictions",
    "jobs_list": "List jobs",
    "jobs_submit": "Submit a batch job",
    "jobs_retrieve": "Get a job and its progress",
    "jobs_delete": "Delete a finished job",
    "jobs_cancel": "Cancel a job",
    "jobs_results": "Get a job's results",
    "jobs_webhook_deliveries": "List a job's webhook deliveries",
    "rollouts_list": "List an alias's rollouts",
    "rollouts_start": "Start a canary rollout",
    "rollouts_retrieve": "Get a rollout",
    "rollouts_abort": "Abort a rollout",
    "rollouts_comparison": "Compare a rollout's versions",
    "rollouts_promote": "Promote a rollout's candidate",
    "evaluation_sets_list": "List evaluation sets",
    "evaluation_sets_create": "Upload an evaluation set",
    "evaluation_sets_retrieve": "Get an evaluation set",
    "evaluation_sets_destroy": "Delete an evaluation set",
    "optimizations_list": "List a model's optimization runs",
    "optimizations_retrieve": "Get an optimization run",
    "api_v1_auth_token_create": "Get a JWT pair from a username and password",
    "api_v1_auth_token_refresh_create": "Refresh a JWT pair",
    "api_v1_auth_token_verify_create": "Check a JWT",
    "api_keys_list": "List your API keys",
    "api_keys_create": "Create an API key",
    "api_keys_retrieve": "Get an API key",
    "api_keys_revoke": "Revoke an API key",
    "me_retrieve": "Get your profile",
    "me_usage": "Get your usage and limits",
    "webhook_secret_retrieve": "Get your webhook signing secret",
    "webhook_secret_rotate": "Rotate your webhook signing secret",
    "oauth_applications_list": "List your OAuth applications",
    "oauth_applications_create": "Register an OAuth application",
    "oauth_applications_retrieve": "Get an OAuth application",
    "oauth_applications_update": "Update an OAuth application",
    "oauth_applications_new_secret": "Issue a new client secret",
    "oauth_application_tokens_list": "List an application's access tokens",
    "oauth_application_tokens_revoke_all": "Revoke all of an application's tokens",
    "oauth_application_tokens_revoke": "Revoke one access token",
    "v2_server_metadata": "Server metadata",
    "v2_health_live": "Server liveness",
    "v2_health_ready": "Server readiness",
    "v2_model_metadata": "Model metadata",
    "v2_model_ready": "Model readiness",
    "v2_model_infer": "Inference (Open Inference Protocol)",
    "v2_repository_index": "List the model repository",
    "v2_repository_model_action": "Load or unload a model",
}

_REQUEST_ID = "4f1c2b7e9a3d4c5e8f6a7b8c9d0e1f2a"

# Component examples: what a real answer looks like (shapes from the running service).
EXAMPLES: dict[str, Any] = {
    "Error": {
        "error": {
            "code": "version_not_ready",
            "message": "Version 3 is validating; an alias can only point at a ready version.",
            "details": {"version": 3, "status": "validating"},
            "request_id": _REQUEST_ID,
        }
    },
    "PredictOutput": {
        "model": "resnet",
        "version": 3,
        "alias": "production",
        "route": None,
        "predictions": [
            {
                "top_k": [
                    {"index": 967, "label": "espresso", "score": 0.8731},
                    {"index": 968, "label": "cup", "score": 0.0412},
                ]
            }
        ],
        "timings_ms": {"decode": 3.1, "preprocess": 2.4, "inference": 18.9, "total": 25.2},
        "request_id": _REQUEST_ID,
    },
    "JobOutput": {
        "id": "0b6f3d2e-8c1a-4f5e-9d7b-2a4c6e8f0a1b",
        "url": "/api/v1/jobs/0b6f3d2e-8c1a-4f5e-9d7b-2a4c6e8f0a1b/",
        "status": "running",
        "model": "resnet",
        "version": 3,
        "alias": "production",
        "route": None,
        "kind": "image",
        "top_k": 5,
        "progress": {
            "total": 1200,
            "done": 480,
            "succeeded": 478,
            "failed": 2,
            "percent": 40.0,
            "items_per_second": 61.5,
            "eta_seconds": 11.7,
        },
        "cancel_requested": False,
        "error": None,
        "webhook_url": "https://example.com/hooks/mlplatform",
        "idempotency_key": "nightly-2026-12-06",
        "request_id": _REQUEST_ID,
        "attempts": 1,
        "created_at": "2026-12-06T09:30:00Z",
        "started_at": "2026-12-06T09:30:01Z",
        "finished_at": None,
        "duration_seconds": 7.8,
        "results_url": "/api/v1/jobs/0b6f3d2e-8c1a-4f5e-9d7b-2a4c6e8f0a1b/results/",
    },
}

# The largest integer a JSON reader in a browser holds exactly (2**53 - 1): bounds past it
# (a BigIntegerField's int64 range) show as 9223372036854776000 in Swagger UI's examples.
_JS_SAFE = 2**53 - 1


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """The drf-spectacular postprocessing hook: tags, summaries, examples, integer bounds."""
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            _label(path, operation)
    schemas = result.get("components", {}).get("schemas", {})
    for name, example in EXAMPLES.items():
        if name in schemas:
            schemas[name]["example"] = example
    _drop_unsafe_bounds(schemas)
    operations = [op for ops in result.get("paths", {}).values() for op in ops.values()]
    used = {tag for op in operations for tag in op.get("tags", [])}
    result["tags"] = [tag for tag in TAGS if tag["name"] in used] + [
        {"name": name} for name in sorted(used - {tag["name"] for tag in TAGS})
    ]
    return result


# A path parameter's example, which Swagger UI's "Try it out" fills in: the demo model.
_PATH_EXAMPLES = {"name": "efficientnet-lite0", "alias": "production", "number": 1}


def _label(path: str, operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") in _PATH_EXAMPLES:
            parameter.setdefault("example", _PATH_EXAMPLES[parameter["name"]])
    if operation.get("tags") in (None, [], ["api"]):
        area = next((tag for pattern, tag in _AREAS if re.match(pattern, path)), None)
        if area:
            operation["tags"] = [area]
    if not operation.get("summary"):
        summary = SUMMARIES.get(operation.get("operationId", ""))
        summary = summary or _first_sentence(operation.get("description"))
        if summary:
            operation["summary"] = summary


def _first_sentence(text: str | None) -> str:
    """A view without a table entry still gets a headline: its description's first sentence."""
    return re.split(r"(?<=[.:])\s", text.strip(), maxsplit=1)[0].rstrip(".:") if text else ""


def _drop_unsafe_bounds(node: Any) -> None:
    if isinstance(node, dict):
        for bound in ("maximum", "minimum"):
            if isinstance(node.get(bound), int) and abs(node[bound]) > _JS_SAFE:
                del node[bound]
        for value in node.values():
            _drop_unsafe_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _drop_unsafe_bounds(value)
