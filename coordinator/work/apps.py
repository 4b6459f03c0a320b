from django.apps import AppConfig


class WorkConfig(AppConfig):
    name = "coordinator.work"
    label = "work"
