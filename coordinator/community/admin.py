"""Notices and deleted accounts in the admin: an admin posts project news here, and deletes
a volunteer's account on their request (an action on the volunteers' list)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from coordinator.accounts.admin import VolunteerAdmin
from coordinator.community.deletion import delete_account
from coordinator.community.models import DeletedAccount, Notice


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    list_display = ("title", "created_at", "published")
    list_filter = ("published",)
    search_fields = ("title", "body")
    date_hierarchy = "created_at"


@admin.register(DeletedAccount)
class DeletedAccountAdmin(admin.ModelAdmin):
    list_display = ("volunteer_id", "deleted_at", "by")
    readonly_fields = ("volunteer", "deleted_at", "by", "cpid")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made only by deleting an account


@admin.action(description="Delete the selected volunteers' accounts (on their request)")
def delete_accounts(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    now = timezone.now()
    chosen = list(queryset.values_list("pk", flat=True))
    for volunteer_id in chosen:
        delete_account(volunteer_id, now=now, by="admin")
    modeladmin.message_user(request, f"Deleted {len(chosen)} account(s): names, emails and keys erased.")


# The accounts app's admin lists volunteers; this layer, above it, adds the deletion to it.
VolunteerAdmin.actions = [*(VolunteerAdmin.actions or []), delete_accounts]  # type: ignore[misc]
