"""Django's runserver, plus the embedded worker and sweeps when the broker is in memory."""

from typing import Any

from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver

from coordinator.core.periodic import start_embedded_runtime


class Command(StaticRunserver):
    help = "Run the coordinator for development; with BROKER_URL=memory:// the worker runs inside."

    def inner_run(self, *args: Any, **options: Any) -> None:
        # inner_run is the serving process (the child, under the autoreloader).
        start_embedded_runtime()
        super().inner_run(*args, **options)
