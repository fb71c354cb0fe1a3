"""What the client does around a request: when to try again after a busy answer (429, 503,
an Idempotency-Key still in use), how long `Retry-After` says to wait, the quoted
Idempotency-Key, and a progress bar for uploads. Standard library only."""

import email.utils
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

# An answer that says "not now": the server did nothing, so the same request may go again.
RETRY_STATUSES_ANY_REQUEST = frozenset({429})  # refused by a rate limit before any work
RETRY_STATUSES_SAFE_REQUEST = frozenset({503})  # GETs and keyed submissions only
IN_USE_CODE = "idempotency_key_in_use"  # 409: the key's first request is still being read


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (RFC 9110 §10.2.3: delay-seconds or an
    HTTP-date), never negative; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(when.timestamp() - current, 0.0)


def worth_retrying(status: int, code: str, *, safe: bool) -> bool:
    """Whether an error answer is "busy, try later" for this request."""
    if status in RETRY_STATUSES_ANY_REQUEST:
        return True
    if status in RETRY_STATUSES_SAFE_REQUEST:
        return safe
    return status == 409 and code == IN_USE_CODE


def quoted_key(key: str) -> str:
    """An Idempotency-Key as a structured-field String (RFC 9651 §3.3.3), as the server reads it."""
    if not key or any(not " " <= char <= "~" for char in key):
        raise ValueError("an idempotency key is 1 to 255 printable ASCII characters")
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ProgressReader:
    """A body being uploaded that reports (bytes sent, total) as http.client reads it in blocks."""

    def __init__(self, raw: IO[bytes], total: int, report: Callable[[int, int], None]) -> None:
        self.raw = raw
        self.total = total
        self.report = report
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.sent += len(chunk)
        self.report(self.sent, self.total)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.raw.seek(offset, whence)
        self.sent = position  # a retry starts the upload again
        self.report(self.sent, self.total)
        return position

    def tell(self) -> int:
        return self.raw.tell()


class UploadBar:
    """`upload [#####.....]  45%  12.3/27.0 MB  3.1 MB/s` on one line of `stream`, redrawn at
    most ten times a second, ended with a newline once everything is sent."""

    WIDTH = 24

    def __init__(self, stream: IO[str] | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.drawn_at = -1.0
        self.last = 0
        self.done = False

    def __call__(self, sent: int, total: int) -> None:
        now = self.clock()
        if sent < self.last:  # the upload started again (a retry)
            self.started, self.done = now, False
        self.last = sent
        finished = total > 0 and sent >= total
        if self.done or (not finished and now - self.drawn_at < 0.1):
            return
        self.drawn_at = now
        fraction = min(sent / total, 1.0) if total else 1.0
        filled = int(fraction * self.WIDTH)
        rate = sent / max(now - self.started, 1e-6)
        line = (
            f"\rupload [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction * 100:3.0f}%  "
            f"{_mb(sent)}/{_mb(total)} MB  {_mb(rate)} MB/s"
        )
        self.stream.write(line + ("\n" if finished else ""))
        self.stream.flush()
        self.done = finished


def _mb(size: float) -> str:
    return f"{size / 1024 / 1024:.1f}"
