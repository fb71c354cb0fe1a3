"""The user of a request behind a login, typed as a `User` (never AnonymousUser).

The API's default permission is IsAuthenticated, so a DRF view method says so in its
signature (`request: AuthenticatedRequest`, django-stubs' documented pattern): an annotation
only, DRF makes plain Requests. A Django view or admin method whose signature must stay the
framework's asks `request_user(request)` instead: the admin lets only staff in.
"""

from django.http import HttpRequest
from rest_framework.request import Request

from apps.accounts.models import User


class AuthenticatedRequest(Request):
    """A DRF request that passed IsAuthenticated."""

    user: User


def request_user(request: HttpRequest) -> User:
    """The logged-in user of a request in the admin (or behind login_required)."""
    user = request.user
    assert isinstance(user, User), "only for requests behind a login"
    return user
