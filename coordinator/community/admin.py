"""Notices in the admin: an admin posts project news here."""

from __future__ import annotations

from django.contrib import admin

from coordinator.community.models import Notice


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    list_display = ("title", "created_at", "published")
    list_filter = ("published",)
    search_fields = ("title", "body")
    date_hierarchy = "created_at"
