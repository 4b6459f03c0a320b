from django.apps import AppConfig


class ValidationConfig(AppConfig):
    name = "coordinator.validation"
    label = "validation"
