from django.db import migrations


class Migration(migrations.Migration):
    """Reputation, quotas and credit per day now belong to the standing app (its 0001 names
    these same tables); the database is not touched."""

    dependencies = [
        ("validation", "0004_ledger_reversals"),
        ("standing", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="CreditDay"),
                migrations.DeleteModel(name="HostAppReputation"),
                migrations.DeleteModel(name="HostAppVersion"),
            ],
            database_operations=[],
        ),
    ]
