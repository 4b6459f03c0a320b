"""The validator's two reads each pass, compiled once per connection (``core.compiled``):
the units marked for validation, locked (those another pass holds are skipped), and their
successes not judged invalid, with their hosts and versions. Compiling them each pass took
4 % of the dramatiq workers' CPU in ``bench.throughput`` (docs/benchmarks.md)."""

from __future__ import annotations

from coordinator.core.compiled import CompiledReadMany
from coordinator.work.lifecycle import Outcome, ValidateState
from coordinator.work.models import Replica, WorkUnit

MARKED_UNITS = CompiledReadMany(
    lambda ids: (
        WorkUnit.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(id__in=ids, need_validate=True)
        .select_related("app")
        .order_by("id")
    )
)
SUCCESSES = CompiledReadMany(
    lambda unit_ids: (
        Replica.objects.filter(workunit_id__in=unit_ids, outcome=Outcome.SUCCESS)
        .exclude(validate_state=ValidateState.INVALID)
        .select_related("host", "app_version")
        .order_by("received_at", "id")
    )
)
