"""Build the volunteer client's wheel that the project serves at /client (run at deploy)."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordinator.core import client_wheel


class Command(BaseCommand):
    help = (
        "Build the client's wheel from client/ into CLIENT_WHEEL_DIR with its SHA-256, replacing "
        "the last one: /client and the pages then show the command that installs it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, help=f"the folder (default: {settings.CLIENT_WHEEL_DIR})")

    def handle(self, *args: Any, output: Path | None, **options: Any) -> None:
        try:
            release = client_wheel.build(output)
        except (client_wheel.ClientBuildError, OSError) as error:
            raise CommandError(f"the client's wheel was not built: {error}") from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Built {release.wheel} ({release.size:,} bytes), sha256 {release.sha256}, "
                f"in {output or settings.CLIENT_WHEEL_DIR}"
            )
        )
