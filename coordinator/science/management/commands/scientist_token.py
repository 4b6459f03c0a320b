"""``manage.py scientist_token USER``: a new API token for a scientist, printed once."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from coordinator.core.errors import DomainError
from coordinator.science.access import SCIENTISTS_GROUP
from coordinator.science.tokens import issue_scientist_token


class Command(BaseCommand):
    help = "Print a new API token for a scientist (the old one stops working)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--make-scientist",
            action="store_true",
            help="first make the user staff and add them to the scientists group",
        )

    @transaction.atomic
    def handle(self, *args: Any, username: str, make_scientist: bool, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"there is no user {username!r} (make one in the admin site)")
        if make_scientist:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(Group.objects.get(name=SCIENTISTS_GROUP))
        try:
            token = issue_scientist_token(user=user, now=timezone.now())
        except DomainError as error:
            raise CommandError(f"{error.message} (or use --make-scientist)") from error
        self.stdout.write(token)
