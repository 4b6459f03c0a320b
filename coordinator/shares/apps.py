from django.apps import AppConfig


class SharesConfig(AppConfig):
    name = "coordinator.shares"
    label = "shares"
    verbose_name = "computing shares"
