"""Bulk inserts give every row its own primary key, in order, on every database; id lists
select the same rows on both."""

from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.core.bulk import any_of, insert_columns, update_rows
from coordinator.testing import make_app, make_host
from coordinator.work.lifecycle import Policy
from coordinator.work.models import Outcome, Replica, ReplicaState, ValidateState, WorkUnit
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


def test_columns_inserted_as_given_and_the_rest_as_a_new_instance_would_hold():
    """``insert_columns`` builds no model: the columns it is given land row by row, in order,
    and every other one holds what ``Replica()`` would (the enum defaults as their values,
    ``created`` set), on both databases."""
    unit = create_work_units(
        app=make_app(), specs=[UnitSpec("cols", b"x", 1)], now=timezone.now(), policy=Policy(1, 1)
    )[0]
    before = set(Replica.objects.values_list("id", flat=True))
    started = timezone.now()

    insert_columns(
        Replica,
        {
            "workunit_id": [unit.pk] * 3,
            "priority": [5, 7, 9],
            "dispatch_key": [30, 20, 10],
            "reserved": [False, True, False],
        },
    )

    new = list(Replica.objects.exclude(id__in=before).order_by("id"))
    assert [(r.priority, r.dispatch_key, r.reserved) for r in new] == [
        (5, 30, False),
        (7, 20, True),
        (9, 10, False),
    ]
    for replica in new:
        assert (replica.state, replica.outcome, replica.validate_state) == (
            ReplicaState.UNSENT,
            Outcome.INIT,
            ValidateState.INIT,
        )
        assert replica.host_id is None and replica.output_sha256 == "" and replica.trusted_single is False
        assert replica.created >= started


def test_columns_of_different_lengths_are_refused_and_none_inserts_nothing():
    unit = create_work_units(
        app=make_app(), specs=[UnitSpec("cols2", b"x", 1)], now=timezone.now(), policy=Policy(1, 1)
    )[0]
    count = Replica.objects.count()
    with pytest.raises(ValueError, match="different lengths"):
        insert_columns(Replica, {"workunit_id": [unit.pk, unit.pk], "priority": [1]})
    insert_columns(Replica, {"workunit_id": [], "priority": []})
    assert Replica.objects.count() == count


def test_updated_rows_keep_what_a_json_or_decimal_field_makes_of_a_plain_value():
    """Plain values skip Django's preparation, except where the field changes them: a string
    in a JSON field is JSON to encode, a float in a decimal field is rounded to its places."""
    (first, _), (second, _) = make_host(), make_host()
    first.platforms, second.platforms = "linux", ["linux", "windows"]
    first.total_credit, second.total_credit = 0.1234567, Decimal("2.5")

    update_rows(Host, [first, second], ["platforms", "total_credit"])

    assert list(Host.objects.order_by("pk").values_list("platforms", "total_credit")) == [
        ("linux", Decimal("0.123457")),
        (["linux", "windows"], Decimal("2.500000")),
    ]
