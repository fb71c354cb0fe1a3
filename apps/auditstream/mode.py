"""Which audit mode this process runs in (settings.AUDIT_MODE, ADR 0030).

"durable": each request's audit rows and quota spend are committed to the database
before it answers. "stream": they are appended to a Redis stream in one atomic step and
copied into PostgreSQL in batches by `manage.py auditwriter`. The stream mode needs
Redis (REDIS_URL) and PostgreSQL (the copy is idempotent by the rows' ids, which come
from PostgreSQL's sequence); without them it falls back to durable, and says why.
"""

from django.conf import settings
from django.db import connection

MODES = ("durable", "stream")


def fallback_reason() -> str:
    """Why AUDIT_MODE=stream runs as durable here ('' when it does not, or is not asked for)."""
    if settings.AUDIT_MODE != "stream":
        return ""
    if not settings.REDIS_URL:
        return "AUDIT_MODE=stream needs Redis (REDIS_URL is not set)"
    if connection.vendor != "postgresql":
        return f"AUDIT_MODE=stream needs PostgreSQL (the database is {connection.vendor})"
    return ""


def stream_enabled() -> bool:
    """True when requests' audit rows go to the Redis stream."""
    return settings.AUDIT_MODE == "stream" and not fallback_reason()


def effective_mode() -> str:
    return "stream" if stream_enabled() else "durable"
