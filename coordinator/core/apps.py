from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "coordinator.core"
    label = "core"
