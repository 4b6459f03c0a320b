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
# What a host says it is and a version's bundle: the validator reads neither, and building
# them (four JSON columns a host) was most of the cost of this read, row by row.
NOT_JUDGED = [
    *(
        f"host__{name}"
        for name in (
            "public_key",
            "name",
            "venue",
            "platform",
            "platforms",
            "os_name",
            "os_version",
            "cpu_vendor",
            "cpu_model",
            "cpu_family",
            "cpu_features",
            "disk_free_bytes",
            "gpus",
            "use_gpus",
            "runtimes",
            "python_version",
            "on_fraction",
            "active_fraction",
        )
    ),
    "app_version__bundle",
    "app_version__signature",
]
SUCCESSES = CompiledReadMany(
    lambda unit_ids: (
        Replica.objects.filter(workunit_id__in=unit_ids, outcome=Outcome.SUCCESS)
        .exclude(validate_state=ValidateState.INVALID)
        .select_related("host", "app_version")
        .defer(*NOT_JUDGED)
        .order_by("received_at", "id")
    )
)
