"""Credentials narrower than their user: an API key, or an OAuth access token.

A JWT or a session acts with its user's full rights. An API key and an OAuth token act as
their user too, but only within their scopes and their list of models; both have the same
few members for that (`Credential`), so the rules that apply those limits (permissions,
visibility, throttles, the doors) are written once and never ask which kind they hold.
"""

from typing import Protocol

from apps.accounts.models import ApiKey
from apps.oauth.credentials import OAuthToken


class Credential(Protocol):
    # Read-only members (properties), so that a model field and a frozen dataclass's
    # field or class variable all provide them.
    @property
    def label(self) -> str: ...  # "API key", "OAuth token": for messages

    @property
    def model_names(self) -> list[str] | tuple[str, ...]: ...  # empty: every model the user may use

    @property
    def rate_limit_per_minute(self) -> int | None: ...  # the credential's own cap, below its user's rates

    def has_scope(self, scope: str) -> bool: ...

    def allows_model(self, name: str) -> bool: ...


def credential_of(auth: object) -> ApiKey | OAuthToken | None:
    """The narrowing credential a request (or a gRPC call) authenticated with; None for a
    JWT or a session."""
    return auth if isinstance(auth, ApiKey | OAuthToken) else None


def recorded_ids(credential: Credential | None) -> dict[str, int | None]:
    """How an audit row or a job records the credential: its API key, or its OAuth
    application (the token itself is short-lived)."""
    return {
        "api_key_id": credential.pk if isinstance(credential, ApiKey) else None,
        "oauth_application_id": credential.application_id if isinstance(credential, OAuthToken) else None,
    }


def log_fields(credential: Credential | None) -> dict[str, str]:
    """What a request's log line adds about its credential: the OAuth application."""
    return {"oauth_application": credential.client_id} if isinstance(credential, OAuthToken) else {}
