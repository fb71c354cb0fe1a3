"""Text from clients, made safe to store and to echo."""

from apps.core.exceptions import InvalidInput


def client_text(value: str, limit: int) -> str:
    """`value` as text every database takes and every encoder writes: valid UTF-8 (bytes in
    another encoding, or lone surrogates from a JSON escape, become replacement characters),
    no NUL (PostgreSQL's text and jsonb refuse it), at most `limit` characters."""
    try:
        raw = value.encode("utf-8", "surrogateescape")  # undecodable bytes, back to bytes
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")  # a lone surrogate such as "\ud800"
    return raw.decode("utf-8", "replace").replace("\x00", "")[:limit]


def is_clean_text(value: str) -> bool:
    """No NUL and no lone surrogate: text PostgreSQL stores and every encoder writes.

    ASCII text has no surrogate, so most values cost one scan for NUL."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"); a real pair is decoded to one character
        return False
    return True


def check_clean_text(value: str, where: str) -> str:
    """`value`, or 400 invalid_text naming where it came from (a query parameter, a field...)."""
    if not is_clean_text(value):
        raise InvalidInput(
            f"NUL characters and lone surrogates are not accepted ({where}).",
            code="invalid_text",
            details={"where": where},
        )
    return value
