"""Reads about work: counts for status pages."""

from django.db.models import Count

from coordinator.work.lifecycle import ReplicaState, UnitState
from coordinator.work.models import Replica, WorkUnit


def unit_counts() -> dict[str, int]:
    counts = dict(WorkUnit.objects.values_list("state").annotate(n=Count("id")).order_by())
    return {state.value: counts.get(state.value, 0) for state in UnitState}


def units_awaiting_validation() -> int:
    return WorkUnit.objects.filter(need_validate=True).count()


def replica_counts() -> dict[str, int]:
    counts = dict(Replica.objects.values_list("state").annotate(n=Count("id")).order_by())
    return {state.value: counts.get(state.value, 0) for state in ReplicaState}
