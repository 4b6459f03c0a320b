from django.contrib import admin

from coordinator.work.models import App, PlanClass, Replica, WorkUnit

# AppVersion's admin is standing.admin's: it shows each version's hosts and their speed.


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["name", "title", "hr_level", "homogeneous_app_version", "created"]
    list_filter = ["hr_level", "homogeneous_app_version"]


@admin.register(PlanClass)
class PlanClassAdmin(admin.ModelAdmin):
    """BOINC's plan_class_spec.xml as rows: what a version of each class needs and uses."""

    list_display = ["name", "kind", "description", "min_cores", "max_cores", "gpu_vendor", "gpu_api"]
    list_filter = ["kind", "gpu_vendor"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "description", "cpu_features"]}),
        ("Multithreaded", {"fields": ["min_cores", "max_cores"]}),
        (
            "GPU",
            {
                "fields": [
                    "gpu_vendor",
                    "gpu_api",
                    "min_gpu_memory_bytes",
                    "min_driver_version",
                    "min_compute_capability",
                    "gpu_speedup",
                    "cpu_per_gpu_task",
                ]
            },
        ),
    ]

    # An edit takes effect at once in this process, within 30 s in the others (work.selectors).


REPLICA_INLINE_FIELDS = (
    "state",
    "outcome",
    "validate_state",
    "host",
    "sent_at",
    "deadline",
    "received_at",
    "output_sha256",
)


class ReplicaInline(admin.TabularInline):
    model = Replica
    fields = REPLICA_INLINE_FIELDS
    readonly_fields = REPLICA_INLINE_FIELDS
    extra = 0
    can_delete = False


@admin.register(WorkUnit)
class WorkUnitAdmin(admin.ModelAdmin):
    list_display = ["name", "app", "batch", "state", "failure_reason", "need_validate", "transition_time"]
    list_filter = ["state", "app"]
    search_fields = ["name"]
    readonly_fields = ["state", "failure_reason", "need_validate", "transition_time", "canonical_replica"]
    inlines = [ReplicaInline]


@admin.register(Replica)
class ReplicaAdmin(admin.ModelAdmin):
    list_display = ["id", "workunit", "state", "outcome", "validate_state", "host", "deadline"]
    list_filter = ["state", "outcome", "validate_state"]
    raw_id_fields = ["workunit", "host", "volunteer", "app_version"]
