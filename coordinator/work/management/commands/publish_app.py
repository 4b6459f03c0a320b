"""``manage.py publish_app NAME``: build, hash, sign and register an app from workunits/."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

import workunits
from coordinator.core import keys
from coordinator.core.errors import DomainError
from coordinator.work.publishing import publish_app


class Command(BaseCommand):
    help = "Build an app's bundle from workunits/NAME, sign it with the project's key and register it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "name", help=f"the app's package in workunits/ ({', '.join(workunits.available())})"
        )

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        try:
            signing_key = keys.load_project_key()
            published = publish_app(name=name, signing_key=signing_key)
        except keys.ProjectKeyError as error:
            raise CommandError(str(error)) from error
        except DomainError as error:
            raise CommandError(error.message) from error
        version = published.version
        state = "published" if published.created else "already published, unchanged"
        self.stdout.write(
            f"{version.app.name} v{version.version}: {state}; {version.bundle_size} bytes, "
            f"SHA-256 {version.bundle_sha256}, signed by {keys.fingerprint(keys.public_key_b64(signing_key))}"
        )
