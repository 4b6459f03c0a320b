from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "coordinator.scheduler"
    label = "scheduler"
