from django.apps import AppConfig


class CommunityConfig(AppConfig):
    name = "coordinator.community"
    label = "community"
    verbose_name = "community: notices and badges"
