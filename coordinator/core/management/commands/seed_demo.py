"""Give a fresh coordinator something to show: a demo app, units and two volunteers."""

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from nacl.signing import SigningKey

from coordinator.accounts.models import Volunteer
from coordinator.accounts.services import create_volunteer, issue_account_token
from coordinator.core import keys
from coordinator.work.bundles import DEMO_APP as DEMO_APP_FOLDER
from coordinator.work.bundles import build_bundle
from coordinator.work.models import App
from coordinator.work.services import RedundancyPolicy, create_work_unit, register_app_version

DEMO_APP = "demo-sha256"
# Rounds of SHA-256 per unit: about a second of a volunteer's core, checkpointed on the way.
DEMO_ROUNDS = 1_000_000
DEMO_VOLUNTEERS = ["ada", "grace"]


def project_key() -> SigningKey:
    """The project's signing key, made on first use so the demo runs on a fresh checkout."""
    try:
        return keys.load_project_key()
    except keys.ProjectKeyMissing:
        return keys.create_project_key(keys.project_key_path())


class Command(BaseCommand):
    help = "Create the demo app, some work units and two volunteers; print their account tokens."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--units", type=int, default=20)
        parser.add_argument("--tokens-file", default=str(Path(settings.VAR_DIR) / "demo-tokens.txt"))

    @transaction.atomic
    def handle(self, *args: Any, units: int, tokens_file: str, **options: Any) -> None:
        now = timezone.now()
        app, created = App.objects.get_or_create(name=DEMO_APP, defaults={"title": "Demo: hash the input"})
        if created:
            bundle = build_bundle(DEMO_APP_FOLDER)
            register_app_version(app=app, version=1, bundle=bundle, signing_key=project_key())
        start = app.units.count()
        for index in range(start, start + units):
            create_work_unit(
                app=app,
                name=f"{DEMO_APP}-{index:05d}",
                input_data=json.dumps({"seed": f"demo {index}", "rounds": DEMO_ROUNDS}).encode(),
                fpops_estimate=DEMO_ROUNDS * 2e3,
                policy=RedundancyPolicy(min_quorum=2, target_nresults=2),
                now=now,
            )
        tokens = []
        for name in DEMO_VOLUNTEERS:
            volunteer = Volunteer.objects.filter(user__username=name).first()
            if volunteer is None:
                volunteer, token = create_volunteer(
                    username=name, password=f"{name}-demo-password-1842", now=now
                )
            else:
                token = issue_account_token(volunteer=volunteer, now=now)
            tokens.append(token)
        Path(tokens_file).write_text("\n".join(tokens) + "\n")
        self.stdout.write(f"demo: {units} new units of {DEMO_APP} ({start + units} in all)")
        for name, token in zip(DEMO_VOLUNTEERS, tokens, strict=True):
            self.stdout.write(f"demo: volunteer {name}, account token {token}")
        self.stdout.write(f"demo: tokens written to {tokens_file}")
