"""The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header): how it is
read, and the mark that a request with a key is in flight.

The header is a structured-field String (RFC 9651): `Idempotency-Key: "8e03978e-…"`. An
unquoted value, as clients sent before, is still taken as the same key (`8e03978e-…` and
`"8e03978e-…"` find the same job). The draft's answers: a key reused with another payload
is 422 `idempotency_key_reused` (apps/jobs/services/submitting.py); a key whose first
request is still being processed is 409 `idempotency_key_in_use`, from `in_flight` below.
"""

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache

from apps.core.cache import UNAVAILABLE
from apps.core.exceptions import Conflict, InvalidInput

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
# Longer than any submission takes to read and store (gunicorn's timeout is 120 s); a process
# that died holding the mark blocks its key no longer than this.
IN_FLIGHT_SECONDS = 300


def parse_idempotency_key(value: str) -> str:
    """The key in an Idempotency-Key header value ('' when absent); 400 when malformed."""
    value = value.strip(" \t")
    if value.startswith('"'):
        value = _sf_string(value)
    if len(value) > MAX_LENGTH:
        raise _invalid(f"{HEADER} is at most {MAX_LENGTH} characters.")
    return value


def _sf_string(value: str) -> str:
    """The content of a structured-field String (RFC 9651 §4.2.5), which must be all of `value`."""
    chars: list[str] = []
    escaped = False
    for index, char in enumerate(value[1:], start=1):
        if not " " <= char <= "~":
            raise _invalid(f"{HEADER} may hold printable ASCII characters only.")
        if escaped:
            if char not in '"\\':
                raise _invalid(f'In a quoted {HEADER}, only \\" and \\\\ are escapes.')
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if index != len(value) - 1:
                raise _invalid(f"Nothing may follow the quoted {HEADER}.")
            return "".join(chars)
        else:
            chars.append(char)
    raise _invalid(f"The quoted {HEADER} has no closing quote.")


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(
        message + ' Send it as a quoted string: Idempotency-Key: "<key>".', code="invalid_idempotency_key"
    )


@contextmanager
def in_flight(*, user_id: object, key: str) -> Iterator[None]:
    """Mark `key` of this user in flight for the block; 409 if another request holds it.

    The mark lives in the shared cache. Without Redis (an outage, or the embedded default
    with several processes) requests go on unmarked: the unique constraint on (owner, key)
    still makes one job, and the second request answers with it.
    """
    if not key:
        yield
        return
    name = "idem:" + hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest()
    token = uuid.uuid4().hex
    if not cache.add(name, token, timeout=IN_FLIGHT_SECONDS) and cache.get(name) not in (None, token):
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry once it has finished.",
            code="idempotency_key_in_use",
        )
    try:
        yield
    finally:
        try:
            if cache.get(name) == token:
                cache.delete(name)
        except UNAVAILABLE:
            pass  # the mark expires by itself
