from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "coordinator.accounts"
    label = "accounts"
