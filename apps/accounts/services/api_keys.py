"""Writes for API keys: create, authenticate, revoke, and evict cached keys."""

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.models import ApiKey, User
from apps.core.exceptions import ApplicationError, InvalidInput
from apps.core.localcache import LocalTTLCache

KEY_PREFIX = "mlp_"
# mlp_ + 8 lowercase letters/digits (the public lookup id) + _ + 43 URL-safe characters (the secret).
_KEY_FORMAT = re.compile(r"^mlp_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")
_LOOKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _digest(key: str) -> str:
    secret = settings.API_KEY_HMAC_SECRET.encode()
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


@dataclass
class CreatedKey:
    api_key: ApiKey
    key: str  # the full key: shown once, never stored


def api_key_create(
    *,
    owner: User,
    name: str,
    scopes: list[str],
    model_names: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    rate_limit_per_minute: int | None = None,
) -> CreatedKey:
    unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
    if not scopes or unknown:
        raise InvalidInput(
            f"Unknown scopes: {', '.join(unknown)}." if unknown else "Give at least one scope.",
            code="invalid_scopes",
            details={"allowed": ApiKey.Scope.values},
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", code="invalid_expiry")
    for _ in range(5):  # a prefix collision is astronomically rare; retry rather than fail
        prefix = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(8))
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    owner=owner,
                    name=name,
                    prefix=prefix,
                    digest=_digest(key),
                    scopes=sorted(set(scopes)),
                    model_names=sorted(set(model_names or [])),
                    expires_at=expires_at,
                    rate_limit_per_minute=rate_limit_per_minute,
                )
            return CreatedKey(api_key=api_key, key=key)
        except IntegrityError:
            continue
    raise ApplicationError(
        "Could not allocate a key id; try again.", code="key_allocation_failed", status_code=503
    )


def api_key_authenticate(raw: str) -> ApiKey:
    """The ApiKey for a presented key, or AuthenticationFailed with a specific code.

    At most one indexed lookup by prefix (with the owner joined in), and usually
    one cache hit instead; the secret is compared in constant time either way.
    Revoking a key or changing its owner evicts the cached copy at once.
    """
    raw = raw.strip()
    match = _KEY_FORMAT.match(raw)
    if not match:
        raise AuthenticationFailed("Malformed API key.", code="invalid_api_key")
    api_key = _api_key_by_prefix(match.group(1))
    if api_key is None or not hmac.compare_digest(api_key.digest, _digest(raw)):
        raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    if api_key.is_revoked:
        raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
    if api_key.is_expired:
        raise AuthenticationFailed("This API key has expired.", code="api_key_expired")
    if not api_key.owner.is_active:
        raise AuthenticationFailed("The key's owner is inactive.", code="user_inactive")
    _touch(api_key)
    return api_key


def _cache_key(prefix: str) -> str:
    return f"apikey:{prefix}"


# A per-process layer over the shared cache: a revocation made in another process
# reaches this one within LOCAL_CACHE_SECONDS (in this process, at once).
_local_keys = LocalTTLCache(ttl=lambda: settings.LOCAL_CACHE_SECONDS)


def _api_key_by_prefix(prefix: str) -> ApiKey | None:
    return _local_keys.get_or_set(prefix, lambda: _shared_api_key_by_prefix(prefix))


def _shared_api_key_by_prefix(prefix: str) -> ApiKey | None:
    api_key = cache.get(_cache_key(prefix))
    if api_key is None:
        api_key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
        if api_key is not None:
            # add, not set: never overwrite an entry written (or evicted and rewritten) meanwhile.
            cache.add(_cache_key(prefix), api_key, settings.API_KEY_CACHE_SECONDS)
    return api_key


def api_key_forget(prefixes: list[str]) -> None:
    """Evict cached keys, so the next request reads the database (revocation, owner changes)."""
    for prefix in prefixes:
        _local_keys.clear(prefix)
    cache.delete_many([_cache_key(prefix) for prefix in prefixes])


def _touch(api_key: ApiKey) -> None:
    """Record use at most once per interval per key, across processes: a marker in the
    shared cache (`add` succeeds for one request per interval) gates the write. The key
    object itself is not written back to the cache, so a copy read before a concurrent
    revocation is never re-cached after it. Each process asks the shared cache at most
    once per interval per key."""
    _touched.get_or_set(api_key.pk, lambda: _touch_shared(api_key))


def _touch_shared(api_key: ApiKey) -> bool:
    interval = settings.API_KEY_LAST_USED_INTERVAL_SECONDS
    if cache.add(f"apikey-used:{api_key.pk}", 1, interval):
        now = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return True


# A process that has passed the shared marker skips it for the rest of the interval: no
# cache round trip per request (off where the per-process caches are off, as in tests).
_touched = LocalTTLCache(
    ttl=lambda: settings.API_KEY_LAST_USED_INTERVAL_SECONDS if settings.LOCAL_CACHE_SECONDS > 0 else 0
)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key (kept for the audit trail); revoking twice changes nothing."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    api_key_forget([api_key.prefix])
    return api_key
