"""Show the messages dramatiq gave up on, and send them back or drop them."""

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coordinator.core import brokers


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "?"


def _call(entry: dict[str, Any], width: int = 200) -> str:
    arguments = [repr(a) for a in entry.get("args", [])]
    arguments += [f"{k}={v!r}" for k, v in entry.get("kwargs", {}).items()]
    text = ", ".join(arguments)
    return f"{entry['actor']}({text if len(text) <= width else text[: width - 1] + '…'})"


class Command(BaseCommand):
    help = (
        "List the dead letters of a queue (messages that failed past their retries), oldest "
        "first; --requeue sends them all back for a fresh try, --purge deletes them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", default="default", help="the queue (default: default)")
        parser.add_argument("--limit", type=int, default=20, help="how many to list (default: 20)")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--requeue", action="store_true", help="send every dead letter back to its queue")
        action.add_argument("--purge", action="store_true", help="delete every dead letter of the queue")

    def handle(self, *args: Any, queue: str, limit: int, requeue: bool, purge: bool, **options: Any) -> None:
        if limit < 1:
            raise CommandError("--limit must be 1 or more")
        if requeue:
            count = brokers.requeue_dead(queue)
            self.stdout.write(self.style.SUCCESS(f"Requeued {count} dead letter(s) on {queue}."))
            return
        if purge:
            count = brokers.purge_dead(queue)
            self.stdout.write(self.style.SUCCESS(f"Purged {count} dead letter(s) of {queue}."))
            return

        depths = brokers.queue_depths()
        self.stdout.write(f"{'queue':<24} {'ready':>7} {'delayed':>7} {'dead':>7}")
        for name, depth in depths.items():
            self.stdout.write(f"{name:<24} {depth['ready']:>7} {depth['delayed']:>7} {depth['dead']:>7}")
        letters = brokers.dead_letters(queue, limit)
        if not letters:
            self.stdout.write(f"\nNo dead letters on {queue}.")
            return
        total = depths.get(queue, {}).get("dead", len(letters))
        self.stdout.write(f"\nDead letters on {queue}, oldest first ({len(letters)} of {total}):")
        for entry in letters:
            self.stdout.write(f"\n  {_when(entry.get('dead_at'))}  {_call(entry)}")
            self.stdout.write(
                f"    message {entry['message_id']}  enqueued {_when(entry.get('enqueued_at'))}"
                f"  retries {entry.get('retries', 0)}"
            )
            if entry.get("error"):
                self.stdout.write(self.style.ERROR(f"    error: {entry['error']}"))
            else:
                self.stdout.write(
                    "    error: not recorded in the message; the worker's log has it under its id"
                )
            if options["verbosity"] > 1 and entry.get("traceback"):
                self.stdout.write("    " + entry["traceback"].rstrip().replace("\n", "\n    "))
        self.stdout.write(
            f"\nmanage.py dead_letters --queue {queue} --requeue (or --purge) acts on all of them."
        )
