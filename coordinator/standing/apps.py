from django.apps import AppConfig


class StandingConfig(AppConfig):
    name = "coordinator.standing"
    label = "standing"

    def ready(self) -> None:
        from coordinator.standing.services import record_timeouts
        from coordinator.work.signals import replicas_timed_out

        # The transitioner (below this app) reports missed deadlines; they count as errors.
        replicas_timed_out.connect(record_timeouts, dispatch_uid="standing.record_timeouts")
