"""A compiled read gives what the ORM gives (fields, converters, related rows), for each value
it is run with, on every database and in every thread; what it cannot build it refuses."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Count
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.accounts.services import HOST_WITH_USER
from coordinator.core.compiled import CompiledRead
from coordinator.testing import make_host

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
