from django.apps import AppConfig


class BoincConfig(AppConfig):
    name = "coordinator.boinc"
    label = "boinc"
    verbose_name = "BOINC clients"

    def ready(self) -> None:
        from coordinator.boinc.forgetting import forget_volunteer
        from coordinator.boinc.publishing import twins_of_published
        from coordinator.community.signals import account_deleting
        from coordinator.work.signals import app_published

        # publish_app (below this app) tells of each app it published: native versions get
        # their BOINC twins when the project has a BOINC key.
        app_published.connect(twins_of_published, dispatch_uid="boinc.twins_of_published")
        # A deleted account (community.deletion) loses its BOINC keys and access here.
        account_deleting.connect(forget_volunteer, dispatch_uid="boinc.forget_volunteer")
