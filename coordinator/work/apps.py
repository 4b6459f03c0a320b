from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class WorkConfig(AppConfig):
    name = "coordinator.work"
    label = "work"

    def ready(self) -> None:
        """This process forgets its cached plan classes and app versions when it changes them
        (work.selectors.ProcessCache); other processes within its time."""
        from coordinator.work import models, selectors

        for model in (models.PlanClass, models.AppVersion, models.App):
            post_save.connect(selectors.forget_caches, sender=model, dispatch_uid=f"forget-{model.__name__}")
            post_delete.connect(
                selectors.forget_caches, sender=model, dispatch_uid=f"forget-{model.__name__}-del"
            )
