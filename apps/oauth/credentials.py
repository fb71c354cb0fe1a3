"""An authenticated OAuth access token, as a request carries it (`request.auth`)."""

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

from apps.accounts.models import User


@dataclass(frozen=True)
class OAuthToken:
    """What an access token lets its bearer do: act as `user`, within the token's scopes
    (as the application still allows them) and the application's models. It has what an
    ApiKey has for that (`apps.accounts.credentials.Credential`), so every rule written for
    keys (scopes, model lists, visibility) holds for it unchanged.

    A snapshot, cached as it is: revoking the token, changing its application or its user
    evicts it (apps/oauth/signals.py)."""

    label: ClassVar[str] = "OAuth token"
    rate_limit_per_minute: ClassVar[None] = None  # the user's rates apply, as for a JWT

    token_id: int
    checksum: str
    user: User
    application_id: int
    client_id: str
    application_name: str
    scopes: frozenset[str]
    model_names: tuple[str, ...]
    expires: dt.datetime
    application_usable: bool

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def allows_model(self, name: str) -> bool:
        return not self.model_names or name in self.model_names
