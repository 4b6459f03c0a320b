from django.contrib import admin

from coordinator.accounts.models import Host, Team, Volunteer


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "founder", "created"]
    search_fields = ["name"]


@admin.register(Volunteer)
class VolunteerAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "created", "token_created"]
    search_fields = ["user__username"]
    readonly_fields = ["token_created"]


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "volunteer", "platform", "n_cpus", "memory_bytes", "flops", "last_contact"]
    search_fields = ["name", "volunteer__user__username"]
    readonly_fields = ["public_key", "created", "last_contact", "quota_day", "quota_used"]
