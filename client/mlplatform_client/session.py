"""One request to the server and its retries: the base every part of `Client` builds on.

`Session._open` sends a request and yields the 2xx answer, or raises `ApiError` (with the
server's error answer) or `TransportError`. Requests that are safe to repeat are tried again
after a connection error, and a busy answer after the wait its `Retry-After` asks for. How a
request is authenticated is `_authorization`: the API key here, an OAuth access token in
`OAuthSession`, which also renews a token the server refused (`_renews_token_after`).
"""

import http.client
import io
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from mlplatform_client import __version__
from mlplatform_client.errors import ApiError, TransportError
from mlplatform_client.transfer import retry_after_seconds, worth_retrying

# Pause before each retry of a request that failed to connect (the last value repeats).
RETRY_BACKOFF_SECONDS: tuple[float, ...] = (0.5, 1.0, 2.0)


class Session:
    """The connection settings of one server; `Client.__init__` sets them."""

    base_url: str
    api_key: str | None
    timeout: float
    retries: int
    max_retry_wait: float
    sleep: Callable[[float], None]

    def request_json(self, method: str, path: str, payload: Any = None, *, retry: bool = False) -> Any:
        """Any JSON call of the API (`path` from the server's root, e.g. /api/v1/models/m/rollouts/):
        the body as JSON, the answer read as JSON; errors as ApiError. `retry` for safe calls."""
        data = json.dumps(payload).encode() if payload is not None else None
        body = io.BytesIO(data) if data is not None else None
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))} if data else None
        with self._open(method, path, body=body, headers=headers, retry=retry) as response:
            return self._read_json(response)

    def _authorization(self) -> dict[str, str]:
        """The headers that authenticate a request: the API key's (OAuthSession adds tokens)."""
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def _renews_token_after(self, error: ApiError) -> bool:
        """Whether `error` refused an access token that can be renewed: never without OAuth."""
        return False

    @contextmanager
    def _open(
        self,
        method: str,
        path: str,
        *,
        body: IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
        accept: str = "application/json",
        authenticate: bool = True,
    ) -> Iterator[http.client.HTTPResponse]:
        url = self.base_url + path
        attempts = 1 + (self.retries if retry else 0)
        attempt = 0
        busy = 0  # busy answers (429, 503...) tried again so far
        renewed = False  # a refused access token is renewed once per request
        while True:
            all_headers = {"Accept": accept, "User-Agent": f"mlplatform-client/{__version__}"}
            if authenticate:
                all_headers.update(self._authorization())
            all_headers.update(headers or {})
            if body is not None:
                body.seek(0)
            # The scheme was checked to be http(s) in __init__.
            request = urllib.request.Request(url, data=body, headers=all_headers, method=method)  # noqa: S310
            try:
                response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
            except urllib.error.HTTPError as exc:
                with exc:
                    error = _api_error(exc)
                # The server refused the request before doing anything: sending it again is safe.
                if authenticate and not renewed and self._renews_token_after(error):
                    renewed = True
                    continue
                wait = self._busy_wait(error, exc.headers, safe=retry, tried=busy)
                if wait is None:
                    raise error from None
                busy += 1
                self.sleep(wait)
                continue
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                attempt += 1
                # A certificate that does not verify will not verify on a second try either.
                if attempt >= attempts or isinstance(reason, ssl.SSLCertVerificationError):
                    raise TransportError(
                        f"cannot reach {self.base_url}: {reason or type(exc).__name__}"
                    ) from exc
                time.sleep(RETRY_BACKOFF_SECONDS[min(attempt - 1, len(RETRY_BACKOFF_SECONDS) - 1)])
                continue
            with response:
                yield response
            return

    def _busy_wait(self, error: ApiError, headers: Any, *, safe: bool, tried: int) -> float | None:
        """Seconds to wait before sending the request again after `error`, or None to give up:
        not a busy answer, no retries left, or a `Retry-After` longer than `max_retry_wait`."""
        if tried >= self.retries or not worth_retrying(error.status, error.code, safe=safe):
            return None
        wait = retry_after_seconds(headers.get("Retry-After") if headers else None)
        if wait is None:
            wait = RETRY_BACKOFF_SECONDS[min(tried, len(RETRY_BACKOFF_SECONDS) - 1)]
        return wait if wait <= self.max_retry_wait else None

    @staticmethod
    def _read_json(response: http.client.HTTPResponse) -> Any:
        try:
            raw = response.read()
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise TransportError(f"the answer broke off: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(response.status, "bad_response", "the server's answer is not JSON") from None


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    request_id = exc.headers.get("X-Request-ID") if exc.headers else None
    try:
        raw = exc.read()
    except (http.client.HTTPException, OSError):
        raw = b""
    try:
        error = json.loads(raw)["error"]
        if isinstance(error, str):  # an OAuth endpoint's answer (RFC 6749 §5.2)
            description = json.loads(raw).get("error_description") or error
            return ApiError(exc.code, error, str(description), request_id=request_id)
        return ApiError(
            exc.code,
            str(error.get("code") or f"http_{exc.code}"),
            str(error.get("message") or exc.reason),
            details=error.get("details") if isinstance(error.get("details"), dict) else None,
            request_id=error.get("request_id") or request_id,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        text = raw.decode(errors="replace").strip()
        message = text[:200] if text and not text.lstrip().startswith("<") else str(exc.reason)
        return ApiError(exc.code, f"http_{exc.code}", message, request_id=request_id)
