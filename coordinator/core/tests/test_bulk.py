"""Bulk inserts give every row its own primary key, in order, on every database; id lists
select the same rows on both."""

import pytest
from django.db import connection
from django.utils import timezone

from coordinator.core.bulk import any_of
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


@pytest.mark.parametrize("ids", [[], [1], [1, 3]])
def test_any_of_picks_exactly_the_ids_asked_for_even_none(ids):
    """``any_of`` is one array on PostgreSQL and a list on SQLite: the same rows either way."""
    created = create_work_units(
        app=make_app(),
        specs=[UnitSpec(f"any-{i}", b"x", 1) for i in range(3)],
        now=timezone.now(),
        policy=Policy(min_quorum=1, target_nresults=1),
    )
    wanted = [created[i - 1].pk for i in ids]
    among, params = any_of("id", wanted)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {WorkUnit._meta.db_table} WHERE {among} ORDER BY id", params)
        assert [row[0] for row in cursor.fetchall()] == sorted(wanted)
