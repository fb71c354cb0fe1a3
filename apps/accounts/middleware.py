from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.accounts.ratelimit_headers import ratelimit_headers


class RateLimitHeadersMiddleware:
    """Adds RateLimit-Policy and RateLimit (IETF draft) and the legacy X-RateLimit-Limit /
    -Remaining / -Reset to responses of throttled scopes, 429s included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        verdict = getattr(request, "ratelimit", None)
        if verdict is not None:
            policy = getattr(request, "throttled_scope", "") or "default"
            for name, value in ratelimit_headers(verdict, policy=policy).items():
                response[name] = value
        return response
