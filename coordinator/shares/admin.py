"""Shares in the admin: each scientist's or group's weight, its part of the project, and
what it used over the last day, so an admin sees who gets what (docs/batches.md)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from coordinator.shares.models import Member, Share, Use


class MemberInline(admin.TabularInline):
    model = Member
    extra = 1
    autocomplete_fields = ["user"]


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "-"


def _annotated(share: Share, name: str) -> float:
    """A figure ``ShareAdmin.get_queryset`` added to the row."""
    return float(getattr(share, name, 0) or 0)


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ["name", "weight", "target", "used_last_day", "replicas_last_day", "member_names"]
    list_editable = ["weight"]
    search_fields = ["name", "members__user__username"]
    inlines = [MemberInline]

    @admin.display(description="target", ordering="weight")
    def target(self, share: Share) -> str:
        return _percent(share.weight, _annotated(share, "all_weights"))

    @admin.display(description="used, last day", ordering="day_fpops")
    def used_last_day(self, share: Share) -> str:
        mine, whole = _annotated(share, "day_fpops"), _annotated(share, "all_fpops")
        width = 100 * mine / whole if whole > 0 else 0.0
        return format_html(
            '<span title="of the operations sent to hosts">{}</span>'
            '<div style="background:#ddd;width:8em;height:.5em"><div style="background:#417690;'
            'width:{}%;height:.5em"></div></div>',
            _percent(mine, whole),
            f"{width:.1f}",
        )

    @admin.display(description="replicas, last day", ordering="day_replicas")
    def replicas_last_day(self, share: Share) -> int:
        return int(_annotated(share, "day_replicas"))

    @admin.display(description="members")
    def member_names(self, share: Share) -> str:
        return ", ".join(member.user.get_username() for member in share.members.all())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Share]:
        since = timezone.now() - timedelta(days=1)
        mine = Use.objects.filter(share=OuterRef("pk"), minute__gte=since).order_by().values("share")
        return (
            super()
            .get_queryset(request)
            .prefetch_related("members__user")
            .annotate(
                day_fpops=Coalesce(Subquery(mine.annotate(v=Sum("fpops")).values("v")), 0.0),
                day_replicas=Coalesce(Subquery(mine.annotate(v=Sum("replicas")).values("v")), 0),
                # The whole project's, for the percentages (whatever the page's filters).
                all_fpops=RawSQL(
                    f"SELECT COALESCE(SUM(fpops), 0) FROM {Use._meta.db_table} WHERE minute >= %s", [since]
                ),
                all_weights=RawSQL(f"SELECT SUM(weight) FROM {Share._meta.db_table}", []),
            )
        )
