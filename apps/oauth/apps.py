from django.apps import AppConfig


class OAuthConfig(AppConfig):
    """OAuth 2.0 with django-oauth-toolkit: the swapped application model, the grant rules,
    the endpoints' wrappers, the management API and the access-token lookup."""

    name = "apps.oauth"
    label = "oauth"
    verbose_name = "OAuth 2.0"

    def ready(self) -> None:
        from apps.oauth import signals  # noqa: F401  (cache eviction)
