from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        check_rates()
        from apps.accounts import schema, signals  # noqa: F401  (OpenAPI security schemes; signal handlers)


def check_rates() -> None:
    """Refuse to start with a rate setting that cannot be parsed (e.g. THROTTLE_RATE_PREDICT=lots)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from apps.accounts.ratelimit import parse_rate

    for name, value in [*settings.THROTTLE_RATES.items(), ("AUTH_FAILURE_RATE", settings.AUTH_FAILURE_RATE)]:
        if not value and name != "AUTH_FAILURE_RATE":  # a blank default turns that limit off
            continue
        try:
            parse_rate(value)
        except ValueError as exc:
            raise ImproperlyConfigured(f"Rate setting {name}: {exc}") from exc
