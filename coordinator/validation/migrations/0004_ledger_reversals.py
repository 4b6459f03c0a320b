"""Credit reversals: a ledger entry is a grant or the reversal of one earlier grant.

No ledger row is changed: the new columns come with their database default (``kind`` is
'grant' for every existing entry, ``reverses`` is NULL), so the append-only triggers of
``0002`` have nothing to refuse. On SQLite, Django rebuilds the table to change it, and the
triggers go with the old table; the first and last operations put them back, both ways.
"""

import django.db.models.deletion
from django.db import migrations, models

SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER IF NOT EXISTS validation_ledgerentry_no_update BEFORE UPDATE ON validation_ledgerentry
    BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS validation_ledgerentry_no_delete BEFORE DELETE ON validation_ledgerentry
    BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only: DELETE refused'); END
    """,
]


def restore_sqlite_triggers(apps, schema_editor):
    """PostgreSQL keeps its trigger through ALTER TABLE; SQLite's went with the old table."""
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("validation", "0003_host_app_version_quota")]

    operations = [
        # Reversed, this runs last: after the table is rebuilt once more.
        migrations.RunPython(migrations.RunPython.noop, restore_sqlite_triggers),
        migrations.AddField(
            model_name="ledgerentry",
            name="kind",
            field=models.CharField(
                choices=[("grant", "Grant"), ("reversal", "Reversal")],
                db_default="grant",
                default="grant",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="reverses",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reversal",
                to="validation.ledgerentry",
                to_field="seq",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="replica",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="ledger_entries", to="work.replica"
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                fields=("replica", "kind"), name="ledger_replica_once_per_kind"
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("kind", "grant"), ("reverses__isnull", True)),
                    models.Q(("kind", "reversal"), ("reverses__isnull", False)),
                    _connector="OR",
                ),
                name="ledger_reversal_names_its_grant",
            ),
        ),
        migrations.RunPython(restore_sqlite_triggers, migrations.RunPython.noop),
    ]
