import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The standing app takes over three tables the validation app made: only Django's idea of
    which app owns them changes; the tables, their rows and constraints stay as they are."""

    initial = True

    dependencies = [
        ("accounts", "0004_host_relations_and_trust"),
        ("work", "0008_lighter_hot_path_indexes"),
        ("validation", "0004_ledger_reversals"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="CreditDay",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("day", models.DateField()),
                        ("credit", models.DecimalField(decimal_places=6, max_digits=20)),
                        (
                            "volunteer",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="credit_days",
                                to="accounts.volunteer",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "validation_creditday",
                        "constraints": [
                            models.UniqueConstraint(fields=("volunteer", "day"), name="credit_day_once")
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="HostAppReputation",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("consecutive_valid", models.PositiveIntegerField(default=0)),
                        ("valid", models.PositiveIntegerField(default=0)),
                        ("invalid", models.PositiveIntegerField(default=0)),
                        ("errors", models.PositiveIntegerField(default=0)),
                        ("error_rate", models.FloatField(default=0.0)),
                        (
                            "app",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="work.app"
                            ),
                        ),
                        (
                            "host",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="app_reputations",
                                to="accounts.host",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "validation_hostappreputation",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("host", "app"), name="reputation_once_per_host_app"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="HostAppVersion",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("daily_quota", models.PositiveIntegerField()),
                        ("quota_day", models.DateField(blank=True, null=True)),
                        ("quota_used", models.PositiveIntegerField(default=0)),
                        (
                            "app_version",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="work.appversion",
                            ),
                        ),
                        (
                            "host",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="app_versions",
                                to="accounts.host",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "validation_hostappversion",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("host", "app_version"), name="quota_once_per_host_version"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("daily_quota__gte", 1)), name="quota_at_least_one"
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
