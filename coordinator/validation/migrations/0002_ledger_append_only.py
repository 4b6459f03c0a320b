"""The database itself refuses to change or remove a credit-ledger entry."""

from django.db import migrations

POSTGRES_UP = [
    """
    CREATE FUNCTION validation_ledger_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'the credit ledger is append-only: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER validation_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON validation_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION validation_ledger_append_only()
    """,
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS validation_ledgerentry_append_only ON validation_ledgerentry",
    "DROP FUNCTION IF EXISTS validation_ledger_append_only()",
]
SQLITE_UP = [
    """
    CREATE TRIGGER validation_ledgerentry_no_update BEFORE UPDATE ON validation_ledgerentry
    BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER validation_ledgerentry_no_delete BEFORE DELETE ON validation_ledgerentry
    BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only: DELETE refused'); END
    """,
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS validation_ledgerentry_no_update",
    "DROP TRIGGER IF EXISTS validation_ledgerentry_no_delete",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # no placeholders: "%" is PL/pgSQL's

    return run


class Migration(migrations.Migration):
    dependencies = [("validation", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRES_DOWN, "sqlite": SQLITE_DOWN}),
        )
    ]
