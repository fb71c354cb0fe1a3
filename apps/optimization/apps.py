from django.apps import AppConfig


class OptimizationConfig(AppConfig):
    name = "apps.optimization"
    label = "optimization"
