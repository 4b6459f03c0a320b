"""Make or show the project's signing keys: ``manage.py keys create [--force]``, ``keys show``;
with ``--boinc``, the BOINC code-signing key (docs/boinc.md), which ``keys rotate --boinc``
replaces the way BOINC clients accept (the new key signed by the old).

None ever prints a private key; ``show`` prints the public key (and our key's fingerprint),
which the project publishes so volunteers can pin it.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordinator.boinc import crypt
from coordinator.boinc import keys as boinc_keys
from coordinator.boinc.publishing import resign_all
from coordinator.core import keys


class Command(BaseCommand):
    help = (
        "Create or show the project's Ed25519 signing key; with --boinc, its BOINC RSA key (and rotate it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,show,rotate}")
        create = actions.add_parser("create", help="make a new key in PROJECT_KEY_FILE (or BOINC_KEY_FILE)")
        create.add_argument(
            "--force",
            action="store_true",
            help="replace an existing Ed25519 key (seals made with the old one will no longer verify)",
        )
        show = actions.add_parser("show", help="print the public key (and its fingerprint)")
        rotate = actions.add_parser(
            "rotate",
            help="BOINC only: a new BOINC key signed by the old, and every BOINC app file signed again",
        )
        for action in (create, show, rotate):
            action.add_argument("--boinc", action="store_true", help="the BOINC code-signing key (RSA-1024)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if options["boinc"]:
            self._boinc(action)
            return
        if action == "rotate":
            raise CommandError("only the BOINC key rotates here: `keys rotate --boinc`")
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

    def _boinc(self, action: str) -> None:
        path = boinc_keys.key_path()
        try:
            if action == "create":
                key = boinc_keys.create_key()
                self.stdout.write(f"created the BOINC code-signing key in {path} (mode 0600)")
            elif action == "rotate":
                key = boinc_keys.rotate_key()
                signed = resign_all(key)
                self.stdout.write(
                    f"rotated the BOINC code-signing key in {path}; {signed} app files signed again; "
                    f"clients that pinned an earlier key take the new one at their next call "
                    f"({boinc_keys.rotations_path()})"
                )
            else:
                key = boinc_keys.load_key()
                self.stdout.write(f"key file: {path}")
        except crypt.BoincKeyError as error:
            raise CommandError(str(error)) from error
        self.stdout.write("public key (BOINC's text form):")
        self.stdout.write(crypt.public_key_text(key))
