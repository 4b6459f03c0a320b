"""The "scientists" group: staff in it may add, view and change (cancel) their own batches.

Which batches are their own is the admin's business (``science.admin``); the group only
grants the model permissions. Permissions are made here, as they are otherwise made only
after all migrations have run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "scientists"
CODENAMES = ["add_batch", "view_batch", "change_batch"]


def make_group(apps, schema_editor):
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="work", codename__in=CODENAMES))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("science", "0001_scientist_tokens"),
        ("work", "0005_batch_clean_up"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(make_group, remove_group)]
