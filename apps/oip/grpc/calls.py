"""Every gRPC call's frame, as Django's request cycle and DRF give an HTTP request theirs:

- database connections: `close_old_connections()` before and after the call, as Django does
  on request_started and request_finished;
- the request id: the `x-request-id` metadata if it is plain and short, else a new one; sent
  back in the initial metadata and set for the logs and the audit rows;
- credentials from the metadata, read by the one function DRF's classes use
  (`authenticate_headers`): `authorization: Bearer <JWT or OAuth access token>`,
  `authorization: Api-Key <key>` or `x-api-key`; an API key or OAuth token needs the call's
  scope;
- the throttle: the caller's rate for the scope, counted by the one function DRF's throttle
  uses (`count_request`); the window's numbers go back in trailing metadata;
- errors: the platform's HTTP status becomes the gRPC code (below), its message the
  details, its stable code the `error-code` trailing metadata, and a wait `retry-after`
  (seconds); anything unexpected is logged and answered INTERNAL, never a crashed server;
- one log line and the metrics (mlplatform_grpc_calls_total, mlplatform_grpc_call_seconds).
"""

import contextvars
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from django.db import close_old_connections
from rest_framework import exceptions as drf

from apps.accounts.authentication import authenticate_headers, client_address_of
from apps.accounts.credentials import Credential, credential_of, log_fields
from apps.accounts.models import User
from apps.accounts.permissions import require_scope
from apps.accounts.ratelimit import Verdict
from apps.accounts.ratelimit_headers import ratelimit_headers
from apps.accounts.throttling import count_request
from apps.core import metrics
from apps.core.exception_handler import describe_error
from apps.core.middleware import accepted_request_id, request_id_var
from apps.inference.models import Prediction
from apps.inference.services import Caller

logger = logging.getLogger("mlplatform.grpc")

# The platform's HTTP statuses as gRPC codes. 413 (an input too large to serve) is
# RESOURCE_EXHAUSTED, as gRPC answers a message over its own size limit; it carries no
# retry-after, for waiting does not help. 429 (a rate or the monthly quota) carries one.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# As RequestIdMiddleware accepts X-Request-ID: a supplied id is echoed, so it stays plain.


def metadata_dict(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """The call's text metadata by lower-case key (the first value of a repeated key);
    binary (`-bin`) entries are left out."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if not key.endswith("-bin") and isinstance(value, str):
            found.setdefault(key.lower(), value)
    return found


def peer_address(peer: str) -> str:
    """The address of a gRPC peer string: "ipv4:10.0.0.1:5000", "ipv6:[::1]:5000" (or with
    %5B %5D), "unix:/path"."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    rest = rest.replace("%5B", "[").replace("%5D", "]")
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    return rest.rpartition(":")[0] or rest


class Call:
    """One call: its metadata, request id, client address and, once authenticated, caller."""

    def __init__(self, context: grpc.ServicerContext, method: str) -> None:
        self.context = context
        self.method = method
        self.metadata = metadata_dict(context.invocation_metadata())
        supplied = self.metadata.get("x-request-id", "")
        self.request_id = accepted_request_id(supplied)
        # x-forwarded-for counts behind NUM_PROXIES trusted proxies, as on HTTP (nginx's grpc_pass).
        self.client = client_address_of(self.metadata, peer_address(context.peer() or ""))
        self.user: User | None = None
        self.api_key: Credential | None = None
        self.verdict: Verdict | None = None
        self.scope = ""

    def authenticate(self, scope: str) -> None:
        found = authenticate_headers(self.metadata, client=self.client)
        if found is None:
            raise drf.NotAuthenticated(
                "Send an API key (x-api-key, or authorization: Api-Key <key>) or a token "
                "(authorization: Bearer <token>) in the call's metadata."
            )
        self.user, auth = found
        self.api_key = credential_of(auth)  # an API key or an OAuth token
        require_scope(self.api_key, scope)

    @property
    def authenticated_user(self) -> User:
        """The caller's user: every rpc authenticates before it throttles or runs."""
        assert self.user is not None, "authenticate() comes first"
        return self.user

    def throttle(self, scope: str) -> None:
        # count_request is annotated for API keys only (apps/accounts/throttling.py, edited
        # elsewhere); it reads an OAuth token's rate, which is None, and nothing more.
        verdict = count_request(self.authenticated_user, self.api_key, scope)
        self.verdict, self.scope = verdict, scope
        if self.verdict is not None and not self.verdict.allowed:
            raise drf.Throttled(wait=self.verdict.retry_after)

    def caller(self) -> Caller:
        return Caller(
            user=self.authenticated_user,
            api_key=self.api_key,
            request_id=self.request_id,
            client_address=self.client,
            source=Prediction.Source.V2_GRPC,
            routing_key=self.metadata.get("x-routing-key", ""),
        )

    def trailing_metadata(self) -> list[tuple[str, str]]:
        """The rate-limit headers of the REST doors, as metadata (gRPC keys are lower case):
        the IETF `ratelimit-policy` and `ratelimit`, and the legacy `x-ratelimit-*`."""
        if self.verdict is None:
            return []
        headers = ratelimit_headers(self.verdict, policy=self.scope)
        return [(name.lower(), value) for name, value in headers.items()]

    def fail(self, error: Exception) -> tuple[grpc.StatusCode, str]:
        """The status and message `error` ends the call with; sets the trailing metadata."""
        code, status, message, wait = status_of(error, self.method)
        trailing = [*self.trailing_metadata(), ("error-code", code)]
        if wait:
            trailing.append(("retry-after", str(wait)))
        self.context.set_trailing_metadata(trailing)
        return status, message


def status_of(error: Exception, method: str) -> tuple[str, grpc.StatusCode, str, int]:
    """(the platform's error code, the gRPC status, the message, seconds to wait or 0)."""
    described = describe_error(error)
    if described is None:
        logger.exception("Unhandled error in gRPC %s", method)
        return "internal_error", grpc.StatusCode.INTERNAL, "An internal error occurred.", 0
    code, message = described
    http_status = getattr(error, "status_code", 400)
    if http_status >= 500 and http_status != 503:
        return code, grpc.StatusCode.INTERNAL, message, 0  # the server's fault, and it says which
    wait = 0
    if http_status == 429:
        details = getattr(error, "details", None)
        seconds = (
            getattr(error, "retry_after", None)
            or getattr(error, "wait", None)
            or (details.get("retry_after") if isinstance(details, dict) else None)
            or 1
        )
        wait = max(math.ceil(float(seconds)), 1)
    return code, STATUS_CODES.get(http_status, grpc.StatusCode.INVALID_ARGUMENT), message, wait


def rpc(*, scope: str | None = None, throttle: bool = False) -> Callable:
    """A servicer method's frame (the module's docstring). With `scope`, the call must be
    authenticated, and an API key must hold the scope; with `throttle`, it counts against
    the caller's rate for that scope. The method gets the request and the Call."""

    def decorate(method: Callable[[Any, Any, Call], Any]) -> Callable:
        name = method.__name__

        @functools.wraps(method)
        def handler(servicer: Any, request: Any, context: grpc.ServicerContext) -> Any:
            return _thread_context().run(run, servicer, request, context)

        def run(servicer: Any, request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            call = Call(context, name)
            token = request_id_var.set(call.request_id)
            status = grpc.StatusCode.OK
            close_old_connections()
            try:
                context.send_initial_metadata((("x-request-id", call.request_id),))
                if scope is not None:
                    call.authenticate(scope)
                    if throttle:
                        call.throttle(scope)
                response = method(servicer, request, call)
                context.set_trailing_metadata(call.trailing_metadata())
                return response
            except Exception as error:
                status, message = call.fail(error)
                context.abort(status, message)
            finally:
                close_old_connections()
                _record(call, status, started)
                request_id_var.reset(token)

        return handler

    return decorate


_threads = threading.local()


def _thread_context() -> contextvars.Context:
    """One context per pool thread, kept from call to call, as a gunicorn thread has. grpcio
    runs each call in a fresh copy of the context, and Django's caches live in context-local
    storage: without this, every call built a new Redis client and connected anew (523
    connections for 522 calls; about 1.8 ms of CPU per call, bench/oip.py)."""
    context = getattr(_threads, "context", None)
    if context is None:
        context = _threads.context = contextvars.copy_context()
    return context


def _record(call: Call, status: grpc.StatusCode, started: float) -> None:
    seconds = time.perf_counter() - started
    metrics.GRPC_CALLS.labels(call.method, status.name).inc()
    metrics.GRPC_CALL_SECONDS.labels(call.method).observe(seconds)
    logger.info(
        "gRPC %s %s",
        call.method,
        status.name,
        extra={
            "method": call.method,
            "grpc_status": status.name,
            "latency_ms": round(seconds * 1000, 2),
            "user_id": call.user.pk if call.user is not None else None,
            "client": call.client,
            **log_fields(call.api_key),
        },
    )
