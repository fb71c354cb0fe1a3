"""Claiming a row of work under a lease: one rule for batch jobs, validation and optimization.

A worker takes a row with one conditional UPDATE. The row must be waiting for a worker
(queued, or running under a lease that has expired because its worker died) and have
attempts left; the UPDATE makes it running, counts the attempt and starts a lease. Of two
workers given the same row, only one updates it. While the winner works, a heartbeat
(apps/core/heartbeat.py) renews the lease with `renew`; its final write goes through `held`,
so a worker that stalled past its lease and was replaced writes nothing.

A row that is waiting but out of attempts (a poison job, a model that kills its worker) is
found by `exhausted`; each app settles it, since what it leaves behind differs per app.

The settings are read at each call (by name), so a test or a reload sees the current value.
"""

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.db.models import F, Model, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a claimed row. `token` is "" when the rule keeps no token."""

    pk: Any
    token: str


@dataclass(frozen=True)
class ClaimRule:
    """How rows of `model` are claimed: `queued` → `running`, under a lease, attempts capped.

    `lease_field` holds either when the lease expires (`lease_stamp="expires"`) or when it was
    last renewed (`"renewed"`: it expires `lease_seconds` later). `token_field`, if any, gets a
    new random token at each claim, and `started_field`, if any, the time of the first claim.
    """

    model: type[Model]
    queued: str
    running: str
    max_attempts_setting: str
    lease_seconds_setting: str
    attempts_field: str = "attempts"
    lease_field: str = "lease_expires_at"
    lease_stamp: Literal["expires", "renewed"] = "expires"
    token_field: str | None = "lease_token"  # noqa: S105 (a field's name, not a secret)
    started_field: str | None = "started_at"

    def __post_init__(self) -> None:
        # A misspelt field fails when the rule is declared, at import, not at the first claim.
        for name in ("status", self.attempts_field, self.lease_field, self.token_field, self.started_field):
            if name is not None:
                self.model._meta.get_field(name)
        if self.lease_stamp not in ("expires", "renewed"):
            raise ValueError(f"lease_stamp is 'expires' or 'renewed', not {self.lease_stamp!r}.")

    @property
    def max_attempts(self) -> int:
        return getattr(settings, self.max_attempts_setting)

    @property
    def lease_seconds(self) -> float:
        return getattr(settings, self.lease_seconds_setting)

    def lease_expired(self, now: dt.datetime | None = None) -> Q:
        """Running rows whose lease has expired: their worker died or stalled."""
        now = now or timezone.now()
        if self.lease_stamp == "renewed":
            now -= dt.timedelta(seconds=self.lease_seconds)
        return Q(status=self.running, **{f"{self.lease_field}__lt": now})

    def waiting(self, now: dt.datetime | None = None) -> Q:
        """Rows owed a worker: queued, or running under an expired lease."""
        now = now or timezone.now()
        return Q(status=self.queued) | self.lease_expired(now)

    def claim(self, pk: Any, *, where: Q | None = None, **changes: Any) -> Lease | None:
        """Take row `pk` if it is waiting and has attempts left (and matches `where`):
        `queued` (or `running` under an expired lease) → `running`, attempts + 1, a new lease.
        `changes` are written in the same UPDATE. None: another worker holds it, it has
        finished, or it is out of attempts (see `exhausted`)."""
        now = timezone.now()
        token = uuid.uuid4().hex if self.token_field else ""
        fields = {
            "status": self.running,
            self.attempts_field: F(self.attempts_field) + 1,
            self.lease_field: self._stamp(now),
            **changes,
        }
        if self.token_field:
            fields[self.token_field] = token
        if self.started_field:
            fields[self.started_field] = Coalesce(F(self.started_field), now)
        rows = self.model._default_manager.filter(
            self.waiting(now), where or Q(), pk=pk, **{f"{self.attempts_field}__lt": self.max_attempts}
        )
        return Lease(pk, token) if rows.update(**fields) else None

    def exhausted(self, pk: Any) -> QuerySet:
        """Row `pk` if it is waiting for a worker but out of attempts: nobody may claim it
        again, and its app settles it (typically `failed`, `attempts_exhausted`)."""
        return self.model._default_manager.filter(
            self.waiting(), pk=pk, **{f"{self.attempts_field}__gte": self.max_attempts}
        )

    def held(self, lease: Lease) -> QuerySet:
        """The row while `lease` still holds it: running, under this lease's token."""
        rows = self.model._default_manager.filter(pk=lease.pk, status=self.running)
        return rows.filter(**{self.token_field: lease.token}) if self.token_field else rows

    def renew(self, lease: Lease) -> bool:
        """Extend the lease (a heartbeat beat); False when the lease is no longer held."""
        return bool(self.held(lease).update(**{self.lease_field: self._stamp(timezone.now())}))

    def _stamp(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.lease_seconds) if self.lease_stamp == "expires" else now
