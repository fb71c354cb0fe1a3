"""The authorization server's endpoints (django-oauth-toolkit's views, with the platform's
rules around them), and the login page of ordinary users.

Errors here are the RFCs' (`{"error": "invalid_client", "error_description": …}`), not the
platform's error shape: OAuth client libraries read these. Failed client authentications
and rejected grants count against the client's address as failed logins do
(AUTH_FAILURE_RATE); past the rate, such a failure answers 429 `temporarily_unavailable`
with Retry-After instead.
"""

import json
import math
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauth2_provider import views as dot_views
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OAuthlibRequest
from rest_framework.exceptions import Throttled

from apps.accounts.authentication import check_auth_failures, client_address_of, count_auth_failure
from apps.oauth import introspection
from apps.oauth.models import Application

# What counts as a failed attempt: a client that did not authenticate, a code, refresh token
# or PKCE verifier that does not hold (guessing either is what the limit is for).
_COUNTED_ERRORS = frozenset({"invalid_client", "invalid_grant"})


def oauth_error(status: int, error: str, description: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response[name] = value
    return response


def throttled_response(exc: Throttled) -> JsonResponse:
    wait = str(max(math.ceil(exc.wait or 1), 1))  # type: ignore[attr-defined]  # DRF's; not in the stubs
    return oauth_error(
        429,
        "temporarily_unavailable",
        f"Too many failed attempts from this address; retry after {wait} seconds.",
        **{"Retry-After": wait},
    )


class CountedFailuresMixin(View):
    """A failed client authentication or grant counts against the address (429 past it)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        if response.status_code in (400, 401) and _error_of(response) in _COUNTED_ERRORS:
            try:
                count_auth_failure(client_address_of(request.headers, request.META.get("REMOTE_ADDR")))
            except Throttled as exc:
                return throttled_response(exc)
        return response


def _error_of(response: HttpResponseBase) -> str | None:
    if not isinstance(response, HttpResponse):  # a streamed answer has no content to read
        return None
    try:
        return json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return None


@method_decorator(csrf_exempt, name="dispatch")
class TokenView(CountedFailuresMixin, dot_views.TokenView):
    """POST /oauth/token/: client credentials, authorization code (+ PKCE), refresh."""

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        # Straight to oauthlib, which knows only the platform's grants (PlatformServer): the
        # toolkit would answer a device-code grant itself (and a 500 without `device_code`).
        return self.authorization_flow_token_response(request)


@method_decorator(csrf_exempt, name="dispatch")
class RevokeTokenView(CountedFailuresMixin, dot_views.RevokeTokenView):
    """POST /oauth/revoke/ (RFC 7009): a client revokes its own access or refresh token."""


@method_decorator(csrf_exempt, name="dispatch")
class IntrospectView(CountedFailuresMixin, OAuthLibMixin, View):
    """POST /oauth/introspect/ (RFC 7662), for resource servers (a gateway, a sidecar).

    The caller authenticates as a confidential client (HTTP Basic, or client_id and
    client_secret in the body). An application owned by a staff user may introspect any
    token; any other application only the tokens issued to it. The answer is
    `{"active": false}` for every token it may not see, as for unknown ones."""

    def post(self, request: HttpRequest) -> JsonResponse:
        client = self._authenticated_client(request)
        if client is None:
            return oauth_error(401, "invalid_client", "Client authentication failed.")
        token = request.POST.get("token", "")
        if not token:
            return oauth_error(400, "invalid_request", "The token parameter is missing.")
        response = JsonResponse(introspection.introspect(token, client))
        response["Cache-Control"] = "no-store"
        return response

    def _authenticated_client(self, request: HttpRequest) -> Application | None:
        core = self.get_oauthlib_core()
        uri, http_method, body, headers = core._extract_params(request)
        oauthlib_request = OAuthlibRequest(uri, http_method, body, headers)
        validator = core.server.request_validator
        if not validator.authenticate_client(oauthlib_request):
            return None
        client = oauthlib_request.client
        return client if client.client_type == client.CLIENT_CONFIDENTIAL else None


class AuthorizationView(dot_views.AuthorizationView):
    """GET /oauth/authorize/: the consent page (after the login page, for a user who is not
    signed in); its POST redirects to the client with a code, or with access_denied."""

    template_name = "oauth/authorize.html"


@method_decorator(never_cache, name="dispatch")
class LoginView(auth_views.LoginView):
    """The login page of ordinary users (the admin's is for staff). Failed logins count
    against the address (AUTH_FAILURE_RATE), and an address over it cannot log in until the
    window ends, even with the right password, as at /api/v1/auth/token/."""

    template_name = "oauth/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            # It reads the headers and META, which a Django request has too; its annotation
            # (DRF's Request) is for apps/accounts/authentication.py to widen.
            check_auth_failures(request)  # type: ignore[arg-type]
        except Throttled as exc:
            return self._locked_out(exc)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        try:
            count_auth_failure(client_address_of(self.request.headers, self.request.META.get("REMOTE_ADDR")))
        except Throttled as exc:
            return self._locked_out(exc)
        return super().form_invalid(form)

    def _locked_out(self, exc: Throttled) -> HttpResponse:
        wait = max(math.ceil(exc.wait or 1), 1)  # type: ignore[attr-defined]  # DRF's; not in the stubs
        response = self.render_to_response(self.get_context_data(locked_out_seconds=wait), status=429)
        response["Retry-After"] = str(wait)
        return response


class LogoutView(auth_views.LogoutView):
    next_page = "login"
