"""Helpers for management commands."""

import datetime as dt

from django.core.management.base import CommandError
from django.utils import timezone


def days_from_now(days: int, option: str) -> dt.datetime:
    """Now plus `days` (minus, for negative days), as a CommandError naming `option` when the
    date would fall outside the calendar (a year past 9999 or before 1)."""
    try:
        return timezone.now() + dt.timedelta(days=days)
    except OverflowError as exc:
        raise CommandError(
            f"{option} {abs(days)} is too large: the date would fall outside the calendar."
        ) from exc
