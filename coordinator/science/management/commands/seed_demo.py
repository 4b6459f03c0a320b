"""Give a fresh coordinator something to show: a demo app, units and two volunteers; the
science apps, a scientist and a small Mandelbrot batch for the admin site."""

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from nacl.signing import SigningKey

from coordinator.accounts.models import Volunteer
from coordinator.accounts.services import create_volunteer, issue_account_token
from coordinator.core import keys
from coordinator.science.access import SCIENTISTS_GROUP
from coordinator.science.actions import split_soon
from coordinator.science.services import submit_batch
from coordinator.science.tokens import issue_scientist_token
from coordinator.work.bundles import DEMO_APP as DEMO_APP_FOLDER
from coordinator.work.bundles import build_bundle
from coordinator.work.lifecycle import Policy
from coordinator.work.models import App
from coordinator.work.publishing import publish_app
from coordinator.work.services import create_work_unit, register_app_version

DEMO_APP = "demo-sha256"
# Rounds of SHA-256 per unit: about a second of a volunteer's core, checkpointed on the way.
DEMO_ROUNDS = 1_000_000
DEMO_VOLUNTEERS = ["ada", "grace"]
DEMO_SCIENTIST = "marie"
DEMO_PICTURE = {
    "width": 384,
    "height": 256,
    "tile": 64,
    "max_iterations": 300,
    "center": [-0.6, 0.0],
    "span": 3.0,
}


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
                policy=Policy(min_quorum=2, target_nresults=2),
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
        scientist_token = self.seed_science(now)
        Path(tokens_file).write_text("\n".join(tokens) + "\n")
        self.stdout.write(f"demo: {units} new units of {DEMO_APP} ({start + units} in all)")
        for name, token in zip(DEMO_VOLUNTEERS, tokens, strict=True):
            self.stdout.write(f"demo: volunteer {name}, account token {token}")
        self.stdout.write(f"demo: tokens written to {tokens_file}")
        self.stdout.write(
            f"demo: scientist {DEMO_SCIENTIST} (password {DEMO_SCIENTIST}-demo-password-1842) sees the "
            f"Mandelbrot batch at /admin/work/batch/; API token {scientist_token}"
        )

    def seed_science(self, now: Any) -> str:
        """Publish the science apps, make the demo scientist, and give them one small batch."""
        for name in ("montecarlo_pi", "sir_sweep", "mandelbrot", "lennard_jones"):
            publish_app(name=name, signing_key=project_key())
        user = get_user_model().objects.filter(username=DEMO_SCIENTIST).first()
        if user is None:
            user = get_user_model().objects.create_user(
                DEMO_SCIENTIST, password=f"{DEMO_SCIENTIST}-demo-password-1842", is_staff=True
            )
            user.groups.add(Group.objects.get(name=SCIENTISTS_GROUP))
        if not user.batches.exists():
            batch = submit_batch(
                owner=user,
                app_name="mandelbrot",
                name="demo picture",
                parameters=DEMO_PICTURE,
                policy=Policy(min_quorum=2, target_nresults=2),
            )
            split_soon(batch.pk)
        return issue_scientist_token(user=user, now=now)
