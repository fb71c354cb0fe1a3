"""OAuth 2.0 client credentials: the access token fetched from the server's token endpoint,
fetched again shortly before it expires or when the server refuses it (revoked)."""

import base64
import io
import threading
import time
import urllib.parse

from mlplatform_client.errors import ApiError
from mlplatform_client.session import Session

TOKEN_PATH = "/oauth/token/"  # noqa: S105 (a path, not a secret)
# An access token is fetched again this long before it expires (at most half its lifetime),
# so that no request leaves with a token about to lapse.
TOKEN_RENEW_MARGIN_SECONDS = 30.0
# The server's codes for a token it no longer takes: fetch a new one and send the request again.
_STALE_TOKEN_CODES = frozenset({"invalid_token", "token_expired"})


class ClientCredentials:
    """OAuth 2.0 client credentials (RFC 6749 §4.4) and the access token they last got. The
    grant has no refresh token: refreshing is asking for a new token."""

    def __init__(self, client_id: str, client_secret: str, *, scope: str | None = None) -> None:
        if not client_id or not client_secret:
            raise ValueError("client credentials need both a client id and a client secret")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.token: str | None = None
        self.renew_at = 0.0  # time.monotonic() after which the token is fetched again
        self.lock = threading.Lock()

    def basic_authorization(self) -> str:
        # RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and encoded.
        pair = f"{urllib.parse.quote_plus(self.client_id)}:{urllib.parse.quote_plus(self.client_secret)}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def keep(self, token: str, expires_in: float) -> None:
        self.token = token
        self.renew_at = time.monotonic() + expires_in - min(TOKEN_RENEW_MARGIN_SECONDS, expires_in / 2)


class OAuthSession(Session):
    """A session that authenticates with client credentials, when it has them and no API key."""

    credentials: ClientCredentials | None

    def access_token(self) -> str:
        """The client-credentials access token, fetched now if there is none or it is about
        to expire."""
        credentials = self.credentials
        assert credentials is not None
        with credentials.lock:
            if credentials.token is None or time.monotonic() >= credentials.renew_at:
                self._fetch_token(credentials)
            assert credentials.token is not None
            return credentials.token

    def _fetch_token(self, credentials: ClientCredentials) -> None:
        form = {"grant_type": "client_credentials"}
        if credentials.scope:
            form["scope"] = credentials.scope
        encoded = urllib.parse.urlencode(form).encode()
        body = io.BytesIO(encoded)
        headers = {
            "Authorization": credentials.basic_authorization(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(encoded)),
        }
        # Safe to repeat: a second request only mints a second token.
        with self._open(
            "POST", TOKEN_PATH, body=body, headers=headers, retry=True, authenticate=False
        ) as response:
            answer = self._read_json(response)
        try:
            credentials.keep(str(answer["access_token"]), float(answer.get("expires_in") or 300))
        except (KeyError, TypeError, ValueError):
            message = "the token endpoint's answer has no access token"
            raise ApiError(response.status, "bad_response", message) from None

    def _authorization(self) -> dict[str, str]:
        # An API key wins (the constructor refuses both); without either, no header.
        if self.api_key or self.credentials is None:
            return super()._authorization()
        return {"Authorization": f"Bearer {self.access_token()}"}

    def _renews_token_after(self, error: ApiError) -> bool:
        """Whether `error` refused our access token (revoked, expired early): forget it, so
        the request can go again with a new one."""
        if self.credentials is None or error.status != 401 or error.code not in _STALE_TOKEN_CODES:
            return False
        with self.credentials.lock:
            self.credentials.token = None
        return True
