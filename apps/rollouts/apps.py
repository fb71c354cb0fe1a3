from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "apps.rollouts"
    label = "rollouts"
    verbose_name = "Rollouts"

    def ready(self) -> None:
        # Every process declares the rollout metrics from its start, so /metrics names them
        # (and the dashboard's queries resolve) before the first rollout answers.
        from apps.rollouts import metrics  # noqa: F401
