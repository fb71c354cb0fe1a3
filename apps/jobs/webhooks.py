"""Job-completion webhooks: where they may go, how they are signed, how one attempt is made.

Signing. Every delivery is signed per Standard Webhooks (`webhook-id`, stable across the retries
of one delivery; `webhook-timestamp`; `webhook-signature`), with the owner's `WebhookSecret`, and
for a transition period also with the legacy `X-MLPlatform-Signature` header: see
apps/jobs/webhook_signing.py. `X-MLPlatform-Delivery` (`<job id>:<attempt>`) stays with it.

Where a webhook may go (SSRF). The platform makes the request, from inside our network, to a URL
a client chose, so the URL could point the platform at itself, the cloud metadata service or a
database. A URL is accepted only if it is http(s), has a host and no user:password part, and every
address the host resolves to is public unicast: private, loopback, link-local, multicast, reserved,
unspecified and other non-global addresses are refused, including IPv4 addresses disguised as IPv6
(`::ffff:127.0.0.1`, 6to4). Networks in `settings.WEBHOOK_ALLOWED_NETWORKS` (CIDR strings)
are allowed anyway, for receivers we run ourselves and for tests. The check runs at submission and
again before every attempt, because DNS can change in between. Redirects are never followed: a
redirect would send the request to a place that was never checked, so it counts as a failure.
What remains is the short window between our resolution and the one `requests` makes; an egress
proxy is the place to close it.

Delivery. `deliver` makes exactly one attempt and records it as a `WebhookDelivery`, whatever
happens; it never raises for network errors. It runs in its own Celery task on a separate
small-task queue (workers/jobs.py), so a slow or unreachable receiver never holds up an inference
worker; that task calls `deliver` and, after a failure, schedules the next attempt `retry_delay()`
seconds later until `max_attempts()` attempts were made.
"""

import ipaddress
import json
import logging
import socket
import time
from typing import Any, NoReturn
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.core.exceptions import InvalidInput
from apps.jobs import webhook_signing
from apps.jobs.models import BatchJob, WebhookDelivery, WebhookSecret
from apps.jobs.serializers import JobOutputSerializer

logger = logging.getLogger(__name__)

EVENT = "job.finished"
USER_AGENT = "mlplatform-webhooks/1"
MAX_URL_LENGTH = 2000
MAX_RETRY_DELAY_SECONDS = 3600
MAX_ERROR_LENGTH = 1000
MAX_SECRET_OVERLAP_SECONDS = 7 * 86400

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- Where a webhook may go ---------------------------------------------------------------------


def check_webhook_url(url: str) -> str:
    """Return `url` normalised if webhooks may be sent there; raise `InvalidInput` if not."""
    parts = _parse_url(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        _refuse(url, f"the host {host} does not resolve")
    allowed = _allowed_networks()
    for info in infos:
        address = _as_address(str(info[4][0]))
        if any(address in network for network in allowed):
            continue
        problem = _address_problem(address)
        if problem:
            _refuse(url, f"the host {host} resolves to {address}, which is {problem}")
    return normalize_url(url)


def normalize_url(url: str) -> str:
    """The URL as stored (scheme and host lower-case, no fragment, `/` for an empty path),
    checked only by the rules that need no DNS."""
    parts = _parse_url(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def _parse_url(url: str) -> SplitResult:
    """The URL's parts, once the rules that need no DNS are checked."""
    if len(url) > MAX_URL_LENGTH:
        _refuse(url, f"it is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines; a URL with any of them is refused instead.
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        _refuse(url, "it contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 -- raises ValueError for a malformed [IPv6] host
    except ValueError:
        _refuse(url, "its host is malformed")
    if parts.scheme.lower() not in ("http", "https"):
        _refuse(url, "only http and https URLs are allowed")
    if "@" in parts.netloc:
        _refuse(url, "it must not contain a user name or password")
    if not parts.hostname:
        _refuse(url, "it has no host")
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        _refuse(url, "its port is not valid")
    return parts


def _refuse(url: str, reason: str) -> NoReturn:
    raise InvalidInput(
        f"Webhook URL refused: {reason}.",
        code="webhook_url_refused",
        details={"url": url[:MAX_URL_LENGTH], "reason": reason},
    )


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for cidr in getattr(settings, "WEBHOOK_ALLOWED_NETWORKS", []):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_NETWORKS: {cidr!r} is not a network.") from exc
    return networks


def _as_address(text: str) -> IPAddress:
    """The address a socket will really talk to: an IPv4-mapped IPv6 address is its IPv4 address."""
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _address_problem(address: IPAddress) -> str | None:
    """Why webhooks must not go to `address`, or None if it is a public unicast address."""
    checks = [
        ("unspecified", "unspecified"),
        ("loopback", "a loopback address"),
        ("link_local", "a link-local address"),
        ("multicast", "a multicast address"),
        ("private", "a private address"),
        ("reserved", "a reserved address"),
    ]
    for attribute, problem in checks:
        if getattr(address, f"is_{attribute}"):
            return problem
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return "a site-local address"
        # A 6to4 address leads to the IPv4 address inside it (NAT64's 64:ff9b::/96 is reserved).
        embedded = address.sixtofour
        embedded_problem = _address_problem(embedded) if embedded is not None else None
        if embedded_problem:
            return f"a 6to4 address for {embedded}, {embedded_problem}"
    if not address.is_global:
        return "not a public address"
    return None


# --- Signing --------------------------------------------------------------------------------------


def secret_for(user: User) -> WebhookSecret:
    """The user's webhook signing secret, created on first use."""
    webhook_secret, _ = WebhookSecret.objects.get_or_create(user=user)
    return webhook_secret


def rotate_secret(user: User, *, overlap_seconds: int | None = None) -> WebhookSecret:
    """Give `user` a new secret; the old one keeps signing for `overlap_seconds`
    (`WEBHOOK_SECRET_OVERLAP_SECONDS` unless given; 0 drops it at once, for a leaked secret)."""
    if overlap_seconds is None:
        overlap_seconds = getattr(settings, "WEBHOOK_SECRET_OVERLAP_SECONDS", 86400)
    with transaction.atomic():
        secret_for(user)
        webhook_secret = WebhookSecret.objects.select_for_update().get(user=user)
        webhook_secret.rotate(now=timezone.now(), overlap_seconds=overlap_seconds)
        webhook_secret.save()
    return webhook_secret


def _signed_headers(job: BatchJob, attempt: int, body: bytes) -> dict[str, str]:
    now = timezone.now()
    headers = webhook_signing.signature_headers(
        secrets_=secret_for(job.owner).signing_secrets(now),
        msg_id=webhook_signing.message_id(job.id),
        timestamp=int(now.timestamp()),
        body=body,
        legacy=getattr(settings, "WEBHOOK_LEGACY_SIGNATURE", True),
    )
    if "X-MLPlatform-Signature" in headers:  # the legacy headers travel together
        headers["X-MLPlatform-Event"] = EVENT
        headers["X-MLPlatform-Delivery"] = f"{job.id}:{attempt}"
    return headers


# --- The payload ----------------------------------------------------------------------------------


def job_webhook_payload(job: BatchJob) -> dict[str, Any]:
    """What a completion webhook carries: the job's summary, as the API shows it."""
    return {"event": EVENT, "job": JobOutputSerializer(job).data}


# --- Delivery -------------------------------------------------------------------------------------


def deliver(*, job: BatchJob, payload: dict[str, Any], attempt: int) -> WebhookDelivery:
    """Make delivery attempt number `attempt` (1-based) of `job`'s webhook and record it.

    Never raises for a refused URL or a network error: both are recorded as a failed attempt.
    """
    started = time.monotonic()
    try:
        url = check_webhook_url(job.webhook_url)
    except InvalidInput as refused:
        return _record(job=job, attempt=attempt, url=job.webhook_url, started=started, error=refused.message)
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers.update(_signed_headers(job, attempt, body))
    timeout = (
        getattr(settings, "WEBHOOK_CONNECT_TIMEOUT_SECONDS", 3),
        getattr(settings, "WEBHOOK_READ_TIMEOUT_SECONDS", 10),
    )
    try:
        # stream=True: only the status line and headers are read; the receiver's body is ignored.
        with requests.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            status_code = response.status_code
            location = response.headers.get("Location", "")
    except (requests.RequestException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        return _record(job=job, attempt=attempt, url=url, started=started, error=error)
    if 200 <= status_code < 300:
        return _record(job=job, attempt=attempt, url=url, started=started, status_code=status_code)
    error = f"HTTP {status_code}"
    if 300 <= status_code < 400:
        error += f": redirects are not followed (Location: {location or 'none'})"
    return _record(job=job, attempt=attempt, url=url, started=started, status_code=status_code, error=error)


def _record(
    *, job: BatchJob, attempt: int, url: str, started: float, status_code: int | None = None, error: str = ""
) -> WebhookDelivery:
    succeeded = status_code is not None and not error
    if not succeeded:
        logger.info("webhook of job %s, attempt %s failed: %s", job.id, attempt, error)
    return WebhookDelivery.objects.create(
        job=job,
        attempt=attempt,
        url=url[:MAX_URL_LENGTH],
        event=EVENT,
        status_code=status_code,
        succeeded=succeeded,
        error=error[:MAX_ERROR_LENGTH],
        duration_ms=(time.monotonic() - started) * 1000,
    )


# --- Retries --------------------------------------------------------------------------------------


def retry_delay(attempt: int) -> int:
    """Seconds to wait before the next attempt after failed attempt number `attempt` (1-based)."""
    base = getattr(settings, "WEBHOOK_RETRY_BASE_SECONDS", 10)
    exponent = min(max(attempt, 1) - 1, 32)  # past 2**32 the cap applies anyway
    return min(base * 2**exponent, MAX_RETRY_DELAY_SECONDS)


def max_attempts() -> int:
    return getattr(settings, "WEBHOOK_MAX_ATTEMPTS", 6)
