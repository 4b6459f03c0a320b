from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin
from django.db.models import QuerySet, Sum
from django.http import HttpRequest

from coordinator.accounts.models import Host, Team, Volunteer

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _InvalidResults(TypedDict):
    invalid_results: int


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "founder", "total_credit", "rac", "created"]
    search_fields = ["name"]
    readonly_fields = ["total_credit", "rac", "rac_time", "rac_rank"]


class CaughtCheatingFilter(admin.SimpleListFilter):
    """Volunteers with at least one host whose result was judged invalid."""

    title = "caught cheating"
    parameter_name = "cheating"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "yes: invalid results"), ("no", "no invalid result")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(invalid_results__gt=0)
        if self.value() == "no":
            return queryset.filter(invalid_results=0)
        return queryset


@admin.register(Volunteer)
class VolunteerAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "total_credit", "rac", "invalid_results", "created"]
    list_filter = [CaughtCheatingFilter]
    search_fields = ["user__username"]
    readonly_fields = ["token_created", "total_credit", "rac", "rac_time", "rac_rank"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(invalid_results=Sum("hosts__invalid_count", default=0))

    @admin.display(description="invalid results", ordering="invalid_results")
    def invalid_results(self, volunteer: WithAnnotations[Volunteer, _InvalidResults]) -> int:
        return volunteer.invalid_results


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "volunteer",
        "platform",
        "n_cpus",
        "flops",
        "valid_count",
        "invalid_count",
        "error_count",
        "independent_valid",
        "caught_at",
        "total_credit",
        "last_contact",
    ]
    list_filter = ["platform"]
    search_fields = ["name", "volunteer__user__username"]
    readonly_fields = [
        "public_key",
        "created",
        "last_contact",
        "registered_network",
        "network",
        "independent_valid",
        "caught_at",
        "consecutive_valid",
        "valid_count",
        "invalid_count",
        "error_count",
        "total_credit",
        "rac",
        "rac_time",
        "rac_rank",
    ]
