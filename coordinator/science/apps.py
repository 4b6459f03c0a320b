from django.apps import AppConfig


class ScienceConfig(AppConfig):
    name = "coordinator.science"
    label = "science"
