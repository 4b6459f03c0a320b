"""App versions in the admin, with what the project knows of them: the hosts running each and
the speed those hosts measured (BOINC's host_app_version), so an admin sees which version is
worth keeping."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Avg, Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from coordinator.standing.models import HostAppVersion
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import AppVersion, Replica


def _measured(field: str, function: type[Avg] | type[Count]) -> Subquery:
    rows = (
        HostAppVersion.objects.filter(app_version=OuterRef("pk"), speed_samples__gt=0)
        .order_by()
        .values("app_version")
        .annotate(value=function(field))
        .values("value")
    )
    return Subquery(rows)


@admin.register(AppVersion)
class AppVersionAdmin(admin.ModelAdmin):
    list_display = [
        "app",
        "version",
        "platform",
        "plan_class",
        "runtime",
        "beta",
        "hosts_running",
        "hosts_measured",
        "measured_gflops",
        "created",
    ]
    list_filter = ["platform", "plan_class", "runtime", "beta", "app"]
    readonly_fields = ["bundle_sha256", "bundle_size", "signature"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AppVersion]:
        running = (
            Replica.objects.filter(app_version=OuterRef("pk"), state=ReplicaState.IN_PROGRESS)
            .order_by()
            .values("app_version")
            .annotate(hosts=Count("host", distinct=True))
            .values("hosts")
        )
        return (
            super()
            .get_queryset(request)
            .select_related("app")
            .annotate(
                running=Coalesce(Subquery(running, output_field=IntegerField()), 0),
                measured=Coalesce(_measured("id", Count), 0),
                speed=_measured("speed_flops", Avg),
            )
        )

    @admin.display(description="hosts running it", ordering="running")
    def hosts_running(self, version: AppVersion) -> int:
        return version.running  # type: ignore[attr-defined]

    @admin.display(description="hosts that measured it", ordering="measured")
    def hosts_measured(self, version: AppVersion) -> int:
        return version.measured  # type: ignore[attr-defined]

    @admin.display(description="their mean speed (GFLOPS)", ordering="speed")
    def measured_gflops(self, version: AppVersion) -> str:
        speed = version.speed  # type: ignore[attr-defined]
        return f"{speed / 1e9:.2f}" if speed else "—"
