from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "coordinator.web"
    label = "web"
    verbose_name = "Public pages"

    def ready(self) -> None:
        from coordinator.web import metrics

        metrics.register()
