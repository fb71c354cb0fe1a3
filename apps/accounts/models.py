from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


# oauth2_provider ships no types, so the Django plugin cannot follow Application.user back here.
class User(AbstractUser):  # type: ignore[django-manager-missing]
    """The platform's user; custom from the first migration so it can grow (plans, limits)."""

    class Meta:
        db_table = "accounts_user"


class ApiKey(models.Model):
    """A credential for scripts and services: `mlp_<prefix>_<secret>`.

    Only an HMAC-SHA256 digest of the secret is stored. The prefix is public
    (shown in lists and logs) and is how a presented key finds its row.
    """

    class Scope(models.TextChoices):
        MODELS_READ = "models:read"
        MODELS_WRITE = "models:write"
        PREDICT = "predict"
        JOBS = "jobs"

    label = "API key"  # a Credential (apps/accounts/credentials.py), as OAuth tokens are

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, unique=True)
    digest = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    # Names of the models the key may be used on; empty means every model its owner may use.
    model_names = models.JSONField(default=list, blank=True)
    # Optional cap for this key alone, below its owner's rates (requests per minute).
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (mlp_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def allows_model(self, name: str) -> bool:
        return not self.model_names or name in self.model_names


class UserLimits(models.Model):
    """An admin's per-user overrides of the default rates and monthly quota (a plan).

    A blank field means "the default from settings".
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="limits")
    plan = models.CharField(max_length=50, blank=True, help_text="A label, e.g. 'team' or 'enterprise'.")
    predict_rate = models.CharField(max_length=20, blank=True, help_text="e.g. 600/min")
    jobs_rate = models.CharField(max_length=20, blank=True, help_text="e.g. 60/min")
    registry_write_rate = models.CharField(max_length=20, blank=True, help_text="e.g. 60/min")
    monthly_prediction_quota = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "user limits"

    def __str__(self) -> str:
        return f"limits of {self.user}"

    def clean(self) -> None:
        from apps.accounts.ratelimit import parse_rate

        errors = {}
        for field in ("predict_rate", "jobs_rate", "registry_write_rate"):
            value = getattr(self, field)
            if value:
                try:
                    parse_rate(value)
                except ValueError as exc:
                    errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)


class QuotaUsage(models.Model):
    """Predictions a user spent in one calendar month (UTC); the quota is checked against it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_usage")
    period = models.DateField(help_text="First day of the month.")
    used = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period"]
        constraints = [models.UniqueConstraint(fields=["user", "period"], name="unique_usage_per_month")]

    def __str__(self) -> str:
        return f"{self.user} {self.period:%Y-%m}: {self.used}"
