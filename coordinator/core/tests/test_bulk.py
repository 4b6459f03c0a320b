"""Bulk inserts give every row its own primary key, in order, on every database."""

import pytest
from django.utils import timezone

from coordinator.testing import make_app
from coordinator.work.lifecycle import Policy
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import UnitSpec, create_work_units

pytestmark = pytest.mark.django_db


def test_bulk_made_units_know_their_own_rows_and_replicas():
    specs = [UnitSpec(f"bulk-{i}", f"input {i}".encode() * (i + 1), i) for i in range(50)]

    units = create_work_units(
        app=make_app(),
        specs=specs,
        now=timezone.now(),
        policy=Policy(min_quorum=1, target_nresults=2),
    )

    stored = {row.pk: row for row in WorkUnit.objects.all()}
    assert [stored[unit.pk].name for unit in units] == [spec.name for spec in specs]
    assert [bytes(stored[unit.pk].input_inline) for unit in units] == [spec.input_data for spec in specs]
    assert all(unit.created is not None for unit in units)
    per_unit = {unit.pk: Replica.objects.filter(workunit_id=unit.pk).count() for unit in units}
    assert set(per_unit.values()) == {2}
