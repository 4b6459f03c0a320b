from django.apps import AppConfig


class BoincConfig(AppConfig):
    name = "coordinator.boinc"
    label = "boinc"
    verbose_name = "BOINC clients"
