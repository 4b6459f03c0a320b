from django.apps import AppConfig


class ScienceConfig(AppConfig):
    name = "coordinator.science"
    label = "science"

    def ready(self) -> None:
        from coordinator.science.tasks import assimilate_soon
        from coordinator.work.signals import batches_finished

        # The report path (below this app) tells when a batch's last unit settled.
        batches_finished.connect(assimilate_soon, dispatch_uid="science.assimilate_soon")
