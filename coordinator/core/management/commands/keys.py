"""Make or show the project's signing key: ``manage.py keys create [--force]``, ``keys show``.

Neither ever prints the private key; ``show`` prints the public key and its fingerprint,
which the project publishes so volunteers can pin it.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordinator.core import keys


class Command(BaseCommand):
    help = "Create the project's Ed25519 signing key file, or show its public key."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,show}")
        create = actions.add_parser("create", help="make a new key in PROJECT_KEY_FILE")
        create.add_argument(
            "--force",
            action="store_true",
            help="replace an existing key (seals made with the old key will no longer verify against it)",
        )
        actions.add_parser("show", help="print the public key and its fingerprint")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        path = keys.project_key_path()
        if action == "create":
            try:
                key = keys.create_project_key(path, overwrite=options["force"])
            except keys.ProjectKeyExists as error:
                raise CommandError(f"{error} (use --force to replace it)") from error
            self.stdout.write(f"created the project's signing key in {path} (mode 0600)")
            public = keys.public_key_b64(key)
        else:
            try:
                public = keys.project_public_key_b64(path)
            except keys.ProjectKeyError as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"key file:    {path}")
        self.stdout.write(f"public key:  {public}")
        self.stdout.write(f"fingerprint: {keys.fingerprint(public)}")
