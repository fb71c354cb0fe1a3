"""How webhook deliveries are signed: the Standard Webhooks headers, the legacy header kept for
a transition period, and the secrets that sign (two during a rotation's overlap window).

Standard Webhooks (https://www.standardwebhooks.com/, docs/decisions/0028-standard-webhooks.md):

    webhook-id: msg_<job id, hex>          the same on every retry of one delivery
    webhook-timestamp: <unix seconds>      of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>." + raw body)> [v1,<…> …]

where the key is the base64-decoded part of a `whsec_<base64>` secret. Any stock verifier (the
`standardwebhooks` libraries, Svix's) checks these with the secret as `/me/webhook-secret/` shows it.

The legacy header, `X-MLPlatform-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." +
body)>[,v1=<hex>]`, is sent as well while `WEBHOOK_LEGACY_SIGNATURE` is on, keyed with the very
same key bytes. Secrets made before the switch were migrated so that those bytes are the old
secret string exactly (`legacy_secret`): receivers that verify the old way keep working unchanged.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)


def new_secret() -> str:
    """A new `whsec_` secret. Its key is 43 URL-safe characters (256 random bits), so that it
    also has a printable legacy form, which the legacy header is keyed with."""
    return encode_secret(secrets.token_urlsafe(32))


def encode_secret(legacy: str) -> str:
    """The `whsec_` form of a key given as text (an old-style secret, or `legacy_secret`)."""
    return SECRET_PREFIX + base64.b64encode(legacy.encode()).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (as the Standard Webhooks libraries decode it)."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("A webhook secret is whsec_ followed by base64.") from exc


def legacy_secret(secret: str) -> str:
    """The secret as the legacy header's verifiers use it: the key bytes as text."""
    return secret_key(secret).decode("ascii", errors="replace")


def message_id(job_id: object) -> str:
    """The delivery's `webhook-id`: one per job (a job finishes once), so every retry repeats
    it and a receiver can drop what it has already processed."""
    return f"msg_{getattr(job_id, 'hex', job_id)}"


def standard_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _legacy_hex(*, key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def legacy_signature(*, secrets_: list[str], timestamp: int, body: bytes) -> str:
    values = [f"v1={_legacy_hex(key=secret_key(s), timestamp=timestamp, body=body)}" for s in secrets_]
    return ",".join([f"t={timestamp}", *values])


def signature_headers(
    *, secrets_: list[str], msg_id: str, timestamp: int, body: bytes, legacy: bool
) -> dict[str, str]:
    """The signing headers of one attempt; every secret in `secrets_` signs (current first)."""
    signatures = [
        standard_signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_
    ]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        # Space-separated, as the specification lists several signatures (rotation).
        "webhook-signature": " ".join(signatures),
    }
    if legacy:
        headers["X-MLPlatform-Signature"] = legacy_signature(
            secrets_=secrets_, timestamp=timestamp, body=body
        )
    return headers


def verify_legacy_signature(
    *, secret: str, header: str, body: bytes, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """The reference check of the legacy header; `secret` is the legacy form (the key as text).
    True if `header` signs `body` and its timestamp is within the tolerance."""
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = _legacy_hex(key=secret.encode(), timestamp=timestamp, body=body)
    # Several v1 values come during a secret rotation; any one matching is enough.
    return any(hmac.compare_digest(expected.encode(), value.encode()) for value in signatures)
