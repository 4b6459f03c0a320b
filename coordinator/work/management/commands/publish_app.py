"""``manage.py publish_app NAME``: build, hash, sign and register an app from workunits/."""

from pathlib import Path
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
        parser.add_argument(
            "--find-links",
            type=Path,
            default=None,
            metavar="DIR",
            help="take the app's pinned wheels from this folder instead of the package index "
            "(each is still checked against its SHA-256)",
        )

    def handle(self, *args: Any, name: str, find_links: Path | None = None, **options: Any) -> None:
        try:
            signing_key = keys.load_project_key()
            published = publish_app(name=name, signing_key=signing_key, find_links=find_links)
        except keys.ProjectKeyError as error:
            raise CommandError(str(error)) from error
        except DomainError as error:
            raise CommandError(error.message) from error
        signer = keys.fingerprint(keys.public_key_b64(signing_key))
        for version, created in published.versions or ((published.version, published.created),):
            state = "published" if created else "already published, unchanged"
            kind = {"native": ", native", "boinc": ", for BOINC clients"}.get(version.runtime, "")
            where = "" if version.platform == "any" else f" ({version.platform}{kind})"
            self.stdout.write(
                f"{version.app.name} v{version.version}{where}: {state}; {version.bundle_size} bytes, "
                f"SHA-256 {version.bundle_sha256}, signed by {signer}"
            )
