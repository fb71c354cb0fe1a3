"""The form of the platform's OAuth tokens: a prefix that says what the token is, then 256
random bits. `mlpat_` is an access token, `mlprt_` a refresh token.

The prefix is how the one Bearer path tells an OAuth access token from a JWT (three dotted
base64url parts, `eyJ…`) without trying one and failing over to the other, and how a
secret scanner recognises a leaked token. Only SHA-256 digests are stored (the toolkit's
`token_checksum`; RFC 9700 token storage).
"""

import hashlib
import re
import secrets

ACCESS_PREFIX = "mlpat_"
REFRESH_PREFIX = "mlprt_"
_FORMAT = re.compile(r"^mlp[ar]t_[A-Za-z0-9_-]{43}$")


def new_access_token(request: object, refresh_token: bool = False) -> str:
    """oauthlib's token generator (ACCESS_TOKEN_GENERATOR)."""
    return ACCESS_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token(request: object) -> str:
    """oauthlib's refresh token generator (REFRESH_TOKEN_GENERATOR)."""
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def is_oauth_token(raw: str) -> bool:
    """Whether a bearer token is one of ours (and not a JWT), by its prefix alone."""
    return raw.startswith((ACCESS_PREFIX, REFRESH_PREFIX))


def is_well_formed(raw: str) -> bool:
    return _FORMAT.match(raw) is not None


def checksum(raw: str) -> str:
    """The stored form of a token, and how it is looked up (the toolkit's `token_checksum`)."""
    return hashlib.sha256(raw.encode()).hexdigest()
