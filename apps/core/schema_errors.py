"""The error answers of every operation, as a drf-spectacular postprocessing hook
(SPECTACULAR_SETTINGS "POSTPROCESSING_HOOKS"): what the shared layers answer for any view is
added here once, instead of in each view's extend_schema, so that the schema lists every 4xx
an operation really gives (schemathesis checks it: tests/fuzz/).

The shared layers and what they answer:
- CleanTextMiddleware and the parsing layer: 400 invalid_text (any path or query string);
  a malformed body 400, a body over its limit 413, a media type the view does not parse 415;
- authentication: 401 (no, bad or expired credentials), and 429 from the failed-authentication
  throttle of the client's address (AUTH_FAILURE_RATE) on every operation that authenticates;
- permissions: 403 for an API key without the operation's scope or model;
- a path parameter naming nothing the caller can see: 404;
- the application server itself, before any of the above (gunicorn, gunicorn.conf.py): 414
  for a request line over 4094 bytes (a long query string) and 431 for a header over 8190
  bytes, with gunicorn's short HTML page, not the error shape (nginx in front answers the
  same statuses at its own limits). Every operation lists them.
Answers particular to one operation are listed in `_SPECIFIC`.
"""

from typing import Any

from apps.core.schema import DESCRIPTIONS

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
# The Open Inference Protocol's doors answer errors in its own shape, {"error": "<message>"}.
_OIP_ERROR_REF = {"$ref": "#/components/schemas/OipError"}
# What gunicorn writes for a request it will not parse (gunicorn.util.write_error).
_SERVER_LIMITS = {
    414: "URI too long: the request line is over the server's limit (4094 bytes)",
    431: "A request header is over the server's limit (8190 bytes)",
}
_SERVER_PAGE = {"text/html": {"schema": {"type": "string"}}}
_RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
}

# (method, path) -> statuses the operation's own code answers besides the shared ones.
_SPECIFIC: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/api/v1/auth/token/"): (400, 401, 429),  # bad body; wrong password; throttled address
    ("post", "/api/v1/auth/token/refresh/"): (400, 401, 429),  # bad body; invalid or blacklisted token
    ("post", "/api/v1/auth/token/verify/"): (400, 401, 429),
    ("get", "/api/v1/me/webhook-secret/"): (401, 403, 429),
    ("post", "/api/v1/me/webhook-secret/"): (400, 401, 403, 429),
    ("put", "/api/v1/models/{name}/grants/{username}/"): (409,),  # a grant to the owner
}


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                _json_bodies_are_json(operation)
                _add_errors(path, method, operation)
    return result


def _json_bodies_are_json(operation: dict[str, Any]) -> None:
    """An operation whose body is JSON is documented with JSON only. DRF's default parsers
    also read the same fields from a form (for the browsable API's HTML forms), where every
    value is text and a type cannot be told: `disabled=0`, `models=AAA`. Operations that take
    files (predict, jobs, versions, evaluation sets) document their multipart body themselves."""
    content = operation.get("requestBody", {}).get("content", {})
    json_body = content.get("application/json")
    for media_type in _FORMS:
        # DRF's default: the same serializer under all three; a view's own multipart body differs
        if json_body is not None and content.get(media_type) == json_body:
            del content[media_type]


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {400}  # a NUL or lone surrogate in the path or query string, on every route
    if _authenticates(operation):
        statuses |= {401, 403, 429}
    if "{" in path or any(p.get("name") == "cursor" for p in operation.get("parameters", [])):
        statuses.add(404)  # a path parameter naming nothing visible; a cursor this server did not make
    if "requestBody" in operation:
        statuses |= {413, 415}
    statuses |= set(_SPECIFIC.get((method, path), ()))
    return statuses


def _authenticates(operation: dict[str, Any]) -> bool:
    """Whether the operation reads credentials: any security requirement that is not `{}`."""
    return any(requirement for requirement in operation.get("security", []))


def _add_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    for status in sorted(_statuses(path, method, operation)):
        entry = responses.setdefault(
            str(status),
            {
                "description": DESCRIPTIONS[status],
                "content": {
                    "application/json": {"schema": _OIP_ERROR_REF if path.startswith("/v2") else _ERROR_REF}
                },
            },
        )
        if status == 429:
            entry.setdefault("headers", {}).update(_RETRY_AFTER)
    for status, description in _SERVER_LIMITS.items():
        responses.setdefault(str(status), {"description": description, "content": _SERVER_PAGE})
    operation["responses"] = dict(sorted(responses.items()))
