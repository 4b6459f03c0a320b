"""A compiled read gives what the ORM gives (fields, converters, related rows), for each value
it is run with, on every database and in every thread; what it cannot build it refuses."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Count
from django.db.models.signals import post_init
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.accounts.services import HOST_WITH_USER
from coordinator.core.compiled import CompiledRead, CompiledReadMany
from coordinator.scheduler.assign import UNITS
from coordinator.scheduler.reports import REPORTED_ROWS, ROW_FIELDS
from coordinator.testing import make_app, make_host, make_units
from coordinator.work.models import Replica, WorkUnit

pytestmark = pytest.mark.django_db(transaction=True)


def fields_of(instance):
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_the_host_read_matches_the_orm_field_by_field_and_with_its_volunteer_and_user():
    first, _ = make_host(platforms=["linux-x86_64", "linux-aarch64"], cpu_features=["avx2"])
    Host.objects.filter(pk=first.pk).update(
        total_credit=Decimal("12.345678"), rac=3.5, rac_time=timezone.now() - timedelta(hours=2)
    )
    second, _ = make_host()

    for host in (first, second):
        orm = Host.objects.select_related("volunteer__user").get(pk=host.pk)
        compiled = HOST_WITH_USER.get(host.pk)

        assert fields_of(compiled) == fields_of(orm)
        assert fields_of(compiled.volunteer) == fields_of(orm.volunteer)
        assert fields_of(compiled.volunteer.user) == fields_of(orm.volunteer.user)
        assert compiled._state.adding is False and compiled._state.db == "default"
    assert isinstance(HOST_WITH_USER.get(first.pk).total_credit, Decimal)
    assert HOST_WITH_USER.get(first.pk).platforms == ["linux-x86_64", "linux-aarch64"]


def test_a_missing_row_is_none_and_saving_a_read_host_writes_it():
    host, _ = make_host()
    assert HOST_WITH_USER.get(host.pk + 1000) is None

    read = HOST_WITH_USER.get(host.pk)
    read.name = "renamed"
    read.save(update_fields=["name"])
    assert Host.objects.get(pk=host.pk).name == "renamed"


def test_a_model_whose_creation_is_listened_to_is_built_by_django_and_the_rest_without_init():
    """Instances are made without ``Model.__init__`` only where nothing listens to their
    creation: a ``post_init`` receiver still hears every instance the read builds."""
    host, _ = make_host()
    heard: list[int] = []

    def listener(sender, instance, **kwargs):
        heard.append(instance.pk)

    read = CompiledRead(lambda pk: Host.objects.filter(pk=pk))
    assert read.get(host.pk).pk == host.pk and heard == []
    post_init.connect(listener, sender=Host)
    try:
        built = read.get(host.pk)
    finally:
        post_init.disconnect(listener, sender=Host)
    assert heard == [host.pk]
    assert fields_of(built) == fields_of(Host.objects.get(pk=host.pk))


def test_each_thread_compiles_for_its_own_connection():
    host, _ = make_host()
    read = CompiledRead(lambda pk: Host.objects.filter(pk=pk))

    def in_thread(_: int) -> str:
        try:
            return read.get(host.pk).name
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=3) as pool:
        seen = list(pool.map(in_thread, range(3)))

    assert seen == [host.name] * 3
    assert read.get(host.pk).name == host.name


def test_reads_it_cannot_build_are_refused_when_compiled():
    host, _ = make_host()
    annotated = CompiledRead(lambda pk: Host.objects.annotate(n=Count("replicas")).filter(pk=pk))
    prefetching = CompiledRead(lambda pk: Host.objects.prefetch_related("replicas").filter(pk=pk))
    unused = CompiledRead(lambda pk: Host.objects.filter(pk=1))
    several = CompiledRead(lambda pk: Host.objects.filter(pk__gte=pk))
    make_host()

    for read in (annotated, prefetching, unused):
        with pytest.raises(ValueError):
            read.get(host.pk)
    with pytest.raises(ValueError, match="more than one row"):
        several.get(host.pk)


def test_a_read_of_many_matches_the_orm_for_every_count_and_keeps_its_order_and_its_fields():
    app = make_app()
    units = [make_units(app, 1, fpops_estimate=1e9 * (i + 1))[0] for i in range(4)]
    ids = [unit.pk for unit in units]
    newest_first = CompiledReadMany(lambda keys: WorkUnit.objects.filter(pk__in=keys).order_by("-id"))

    for keys in ([ids[0]], ids[1:3], ids, [*ids, ids[-1] + 1000], [ids[0] + 1000]):
        orm = list(WorkUnit.objects.filter(pk__in=keys).order_by("-id"))
        read = newest_first.many(keys)
        assert [fields_of(unit) for unit in read] == [fields_of(unit) for unit in orm]
        assert {unit.pk for unit in UNITS.many(keys)} == {unit.pk for unit in orm}
    assert newest_first.many([]) == []

    replicas = list(Replica.objects.filter(workunit__in=units).order_by("id"))
    read = {row.pk: row for row in REPORTED_ROWS.many([r.pk for r in replicas])}
    for replica in replicas:
        row = read[replica.pk]
        assert row.get_deferred_fields() == {f.attname for f in Replica._meta.concrete_fields} - {
            Replica._meta.get_field(name).attname for name in ROW_FIELDS
        }
        assert {name: getattr(row, Replica._meta.get_field(name).attname) for name in ROW_FIELDS} == {
            name: getattr(replica, Replica._meta.get_field(name).attname) for name in ROW_FIELDS
        }


def test_a_read_of_many_must_filter_with_in_once():
    make_units(make_app(), 1)
    equal = CompiledReadMany(lambda keys: WorkUnit.objects.filter(pk=keys[0]))
    twice = CompiledReadMany(lambda keys: WorkUnit.objects.filter(pk__in=keys, app_id__in=keys))
    if connections["default"].vendor == "postgresql":  # elsewhere the query set runs as it is
        with pytest.raises(ValueError, match="__in"):
            equal.many([1])
        with pytest.raises(ValueError, match="once"):
            twice.many([1])


def test_a_read_of_many_gives_what_values_and_values_list_give():
    app = make_app()
    units = make_units(app, 3)
    ids = [unit.pk for unit in units]
    shapes = [
        lambda keys: (
            Replica.objects.filter(workunit_id__in=keys)
            .order_by("id")
            .values("workunit_id", "state", "deadline")
        ),
        lambda keys: (
            WorkUnit.objects.filter(pk__in=keys).order_by("id").values_list("id", "state", "transition_time")
        ),
        lambda keys: WorkUnit.objects.filter(pk__in=keys).order_by("-id").values_list("id", flat=True),
    ]
    for shape in shapes:
        read = CompiledReadMany(shape)
        for keys in (ids[:1], ids, [ids[0] + 1000]):
            assert read.many(keys) == list(shape(keys))
    named = CompiledReadMany(lambda keys: WorkUnit.objects.filter(pk__in=keys).values_list("id", named=True))
    if connections["default"].vendor == "postgresql":
        with pytest.raises(ValueError, match="not NamedValuesListIterable"):
            named.many(ids)
