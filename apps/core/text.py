"""Text from clients, made safe to store and to echo."""


def client_text(value: str, limit: int) -> str:
    """`value` as text every database takes and every encoder writes: valid UTF-8 (bytes in
    another encoding, or lone surrogates from a JSON escape, become replacement characters),
    no NUL (PostgreSQL's text and jsonb refuse it), at most `limit` characters."""
    try:
        raw = value.encode("utf-8", "surrogateescape")  # undecodable bytes, back to bytes
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")  # a lone surrogate such as "\ud800"
    return raw.decode("utf-8", "replace").replace("\x00", "")[:limit]
