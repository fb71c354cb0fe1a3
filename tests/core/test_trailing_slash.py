"""One trailing-slash rule for every route (TrailingSlashMiddleware): a route answers with or
without its trailing slash, the same way, and nothing is redirected, whatever the method.
Checked over every route of the URL resolver, not a list kept by hand."""

import re
from collections.abc import Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

# A value for each path converter and each named regex group the routes use.
_SAMPLES = {"int": "1", "slug": "m", "str": "m", "uuid": "00000000-0000-0000-0000-000000000001", "path": "m"}
_REGEX_SAMPLES = {"action": "load", "version": "1"}
_REDIRECTS = {301, 302, 303, 307, 308}


def _route(pattern: object) -> str:
    """A concrete path for one URL pattern (a `path()` route or a `re_path()` regex)."""
    text = str(pattern)
    if hasattr(pattern, "_route"):
        return re.sub(r"<(?:(\w+):)?\w+>", lambda m: _SAMPLES[m.group(1) or "str"], text)
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: _REGEX_SAMPLES.get(m.group(1), "m"), text)
    text = re.sub(r"\(\?:[^)]*\)\?", "", text)  # optional parts: left out
    return text.lstrip("^").rstrip("$").replace("\\", "")


def routes(resolver: URLResolver | None = None, prefix: str = "/") -> Iterator[str]:
    for entry in (resolver or get_resolver()).url_patterns:
        path = prefix + _route(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from routes(entry, path)
        elif isinstance(entry, URLPattern) and "(" not in path and "<" not in path:
            yield path


ALL_ROUTES = sorted(set(routes()))


def toggled(path: str) -> str:
    return path[:-1] if path.endswith("/") else f"{path}/"


def test_the_walk_finds_the_api_routes():
    assert "/api/v1/jobs/00000000-0000-0000-0000-000000000001/cancel/" in ALL_ROUTES
    assert "/api/v1/models/m/predict" in ALL_ROUTES
    assert "/v2/models/m/infer" in ALL_ROUTES
    assert len(ALL_ROUTES) > 40


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_no_route_redirects_and_both_spellings_answer_alike(api, method):
    different = []
    for path in ALL_ROUTES:
        if path.startswith(("/admin/", "/static/", "/o/")):
            continue  # HTML and the OAuth server's own endpoints: checked below for redirects only
        canonical = getattr(api, method)(path)
        other = getattr(api, method)(toggled(path))
        # A redirect only where the view itself redirects (Swagger UI's OAuth page to its file)
        if canonical.status_code not in _REDIRECTS:
            assert other.status_code not in _REDIRECTS, (method, toggled(path), other.status_code)
        if other.status_code != canonical.status_code:
            different.append((method, path, canonical.status_code, other.status_code))
    assert different == []


def test_no_route_redirects_a_post_for_its_slash_admin_and_oauth_included(client):
    for path in ALL_ROUTES:
        canonical, other = client.post(path), client.post(toggled(path))
        if canonical.status_code not in _REDIRECTS:  # the admin's login redirect is its own
            assert other.status_code not in _REDIRECTS, (toggled(path), other.status_code)


def test_post_cancel_without_the_slash_cancels(api):
    """The reported case: POST …/cancel without the slash reaches the cancel view (404 here: no
    such job), where it used to answer 301."""
    response = api.post("/api/v1/jobs/00000000-0000-0000-0000-000000000001/cancel")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_an_unknown_path_is_404_in_the_error_shape(api):
    response = api.post("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
