from django.contrib import admin

from coordinator.work.models import App, AppVersion, Replica, WorkUnit


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["name", "title", "created"]


@admin.register(AppVersion)
class AppVersionAdmin(admin.ModelAdmin):
    list_display = ["app", "version", "platform", "bundle_size", "created"]
    readonly_fields = ["bundle_sha256", "bundle_size", "signature"]


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
