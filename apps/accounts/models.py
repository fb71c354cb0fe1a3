from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """The platform's user; custom from the first migration so it can grow (plans, limits)."""

    class Meta:
        db_table = "accounts_user"
