"""``manage.py seed_demo``: what `make run` gives a fresh coordinator to show."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from coordinator.accounts.models import Volunteer
from coordinator.science.management.commands.seed_demo import DEMO_APP, DEMO_SCIENTIST, DEMO_VOLUNTEERS
from coordinator.work.models import App, Batch

pytestmark = pytest.mark.django_db


def seed(tokens_file, units: int = 2) -> str:
    out = StringIO()
    call_command("seed_demo", units=units, tokens_file=str(tokens_file), stdout=out)
    return out.getvalue()


def test_seed_demo_makes_units_volunteers_a_scientist_and_a_batch(project_key_file, tmp_path):
    tokens_file = tmp_path / "tokens.txt"

    said = seed(tokens_file)

    app = App.objects.get(name=DEMO_APP)
    assert app.versions.count() == 1 and app.units.count() == 2
    assert set(Volunteer.objects.values_list("user__username", flat=True)) == set(DEMO_VOLUNTEERS)
    assert get_user_model().objects.get(username=DEMO_SCIENTIST).batches.count() == 1
    assert Batch.objects.get().app.name == "mandelbrot"
    tokens = tokens_file.read_text().split()
    assert len(tokens) == len(DEMO_VOLUNTEERS) and all(token in said for token in tokens)
    assert project_key_file.is_file(), "a fresh checkout gets its signing key"


def test_seed_demo_again_adds_units_and_nothing_else(project_key_file, tmp_path):
    seed(tmp_path / "first.txt")

    said = seed(tmp_path / "second.txt", units=3)

    assert App.objects.get(name=DEMO_APP).units.count() == 5
    assert f"3 new units of {DEMO_APP} (5 in all)" in said
    assert Volunteer.objects.count() == len(DEMO_VOLUNTEERS) and Batch.objects.count() == 1
