"""``manage.py boinc_stats OUTPUT_DIR``: BOINC's statistics files (user.gz, team.gz, host.gz and
tables.xml, as BOINC's db_dump writes them) for stats sites to fetch; run it daily and serve
the folder as the project's ``stats/``. See coordinator.boinc.stats."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from coordinator.boinc.stats import export_stats


class Command(BaseCommand):
    help = "Write BOINC's statistics export (user.gz, team.gz, host.gz, tables.xml) into OUTPUT_DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output_dir", type=Path, help="folder to write into; made if missing")

    def handle(self, *args: object, output_dir: Path, **options: object) -> None:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"cannot make {output_dir}: {error.strerror}") from None
        counts = export_stats(output_dir, now=timezone.now())
        users, teams, hosts = counts["users"], counts["teams"], counts["hosts"]
        self.stdout.write(f"wrote {users} users, {teams} teams and {hosts} hosts to {output_dir}")
