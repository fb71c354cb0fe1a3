"""Reads for OAuth: a user's applications, and an application's tokens."""

from django.db.models import Exists, OuterRef, QuerySet
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from apps.accounts.models import User
from apps.core.exceptions import NotFound
from apps.oauth.models import Application


def application_list(*, user: User) -> QuerySet[Application]:
    """The user's own applications, newest first (admins see everyone's in the admin)."""
    return Application.objects.filter(user=user).order_by("-created", "-pk")


def application_get(*, user: User, application_id: int) -> Application:
    application = application_list(user=user).filter(pk=application_id).first()
    if application is None:
        raise NotFound(f"No OAuth application {application_id}.", code="application_not_found")
    return application


def token_list(*, application: Application) -> QuerySet:
    """The application's access tokens, newest first, each with whether a live refresh
    token is bound to it (an expired access token may still be refreshed)."""
    live_refresh = get_refresh_token_model().objects.filter(access_token=OuterRef("pk"), revoked__isnull=True)
    return (
        get_access_token_model()
        .objects.filter(application=application)
        .select_related("user")
        .annotate(refreshable=Exists(live_refresh))
        .order_by("-created", "-pk")
    )


def token_get(*, application: Application, token_id: int) -> object:
    token = token_list(application=application).filter(pk=token_id).first()
    if token is None:
        raise NotFound(f"No token {token_id} of this application.", code="token_not_found")
    return token
