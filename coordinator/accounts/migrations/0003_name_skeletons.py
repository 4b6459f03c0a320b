"""Look-alike names: keep each volunteer's and team's name skeleton, one row per skeleton.

Existing rows are filled in order of age. Where names already taken look alike, the oldest
keeps the skeleton (and so still blocks new look-alikes) and the others stay empty: they
keep working, nothing is renamed. ``fill_name_skeletons`` also recomputes every skeleton
after an upgrade of ICU (pyicu-wheels) changed some.
"""

from django.db import migrations, models

from coordinator.accounts.names import skeleton_digest

BATCH = 2000


def _fill(rows, name_of, model) -> None:
    # Stale skeletons (a recompute) must not block new ones. Only rows that have one: on
    # PostgreSQL a row updated twice in the migration's transaction leaves foreign-key
    # checks pending, and the constraints below could not be added.
    model.objects.exclude(name_skeleton=None).update(name_skeleton=None)
    taken: set[str] = set()
    changed = []
    for row in rows.iterator(chunk_size=BATCH):
        digest = skeleton_digest(name_of(row))
        if digest in taken:
            continue
        taken.add(digest)
        row.name_skeleton = digest
        changed.append(row)
        if len(changed) == BATCH:
            model.objects.bulk_update(changed, ["name_skeleton"])
            changed = []
    model.objects.bulk_update(changed, ["name_skeleton"])


def fill_name_skeletons(apps, schema_editor) -> None:
    Volunteer = apps.get_model("accounts", "Volunteer")
    Team = apps.get_model("accounts", "Team")
    volunteers = (
        Volunteer.objects.select_related("user").only("pk", "user__username").order_by("created", "pk")
    )
    _fill(volunteers, lambda volunteer: volunteer.user.username, Volunteer)
    _fill(Team.objects.only("pk", "name").order_by("created", "pk"), lambda team: team.name, Team)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_credit_and_reputation")]

    operations = [
        migrations.AddField(
            model_name="team",
            name="name_skeleton",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="volunteer",
            name="name_skeleton",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(fill_name_skeletons, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="team",
            constraint=models.UniqueConstraint(fields=("name_skeleton",), name="team_name_skeleton_once"),
        ),
        migrations.AddConstraint(
            model_name="volunteer",
            constraint=models.UniqueConstraint(
                fields=("name_skeleton",), name="volunteer_name_skeleton_once"
            ),
        ),
    ]
