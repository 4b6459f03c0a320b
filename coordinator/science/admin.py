"""Batches in the admin site, for scientists: submit, watch, download, cancel.

A scientist (a staff user in the "scientists" group) sees only their own batches: the
change list, the change page, the result download and the cancel action all go through
``access.batches_of``, so another scientist's batch is simply not there.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from coordinator.core.errors import DomainError
from coordinator.science import access, actions, selectors, services, tokens
from coordinator.science.forms import BatchSubmitForm
from coordinator.work.models import Batch, BatchState

SHOWN_FAILURES = 100


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown until units validate"
    return str(timedelta(seconds=round(seconds)))


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    form = BatchSubmitForm
    list_display = ["name", "app", "state", "progress_bar", "owner", "created"]
    list_filter = ["state", "app"]
    search_fields = ["name"]
    actions = ["cancel_batches"]
    fieldsets_shown = [
        (None, {"fields": ["name", "app", "owner", "state", "created", "finished"]}),
        ("Progress", {"fields": ["progress_table", "result_link", "failures", "corrections"]}),
        (
            "Submitted with",
            {
                "fields": [
                    "parameters",
                    "min_quorum",
                    "target_nresults",
                    "max_error_results",
                    "max_total_results",
                    "deadline",
                    "priority",
                ]
            },
        ),
    ]
    submit_fields = [
        "name",
        "app_name",
        "parameter_file",
        "parameters_json",
        "min_quorum",
        "target_nresults",
        "max_error_results",
        "max_total_results",
        "deadline_hours",
        "priority",
    ]

    # -- who sees what ----------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return access.batches_of(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.is_scientist(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return access.is_scientist(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.is_scientist(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return access.is_scientist(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return request.user.is_superuser  # the credit ledger protects units that earned credit

    # -- the two pages: a form to submit, a read-only page to watch ----------------------
    def get_form(self, request: HttpRequest, obj: Batch | None = None, change: bool = False, **kwargs: Any):
        if obj is not None:  # the watch page: nothing to edit
            kwargs.update(fields=[], form=forms.ModelForm)
            return super().get_form(request, obj, change=change, **kwargs)
        owner = request.user

        class OwnedBatchSubmitForm(BatchSubmitForm):
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, owner=owner, **kw)

        return OwnedBatchSubmitForm

    def get_fieldsets(self, request: HttpRequest, obj: Batch | None = None):
        if obj is None:
            return [(None, {"fields": self.submit_fields})]
        return self.fieldsets_shown

    def get_readonly_fields(self, request: HttpRequest, obj: Batch | None = None) -> list[str]:
        if obj is None:
            return []
        return [field for _, options in self.fieldsets_shown for field in options["fields"]]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The watch page: no save buttons, as there is nothing to edit (cancel is an action)."""
        context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        context["show_save_and_add_another"] = False
        return super().change_view(request, object_id, form_url, extra_context=context)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Batch:
        return services.record_batch(form.submission)  # checked whole by the form's clean()

    def save_model(self, request: HttpRequest, obj: Batch, form: Any, change: bool) -> None:
        if not change:
            actions.split_soon(obj.pk)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """A batch has no related objects to save from this form."""

    # -- what the watch page shows --------------------------------------------------------
    @admin.display(description="progress")
    def progress_bar(self, batch: Batch) -> SafeString:
        progress = selectors.batch_progress(batch, now=timezone.now())
        finished, planned = progress.validated + progress.failed, progress.planned
        return format_html(
            '<progress max="{planned}" value="{finished}" aria-label="{finished} of {planned} units '
            'finished"></progress> {finished} / {planned}',
            planned=planned,
            finished=finished,
        )

    @admin.display(description="deadline per task")
    def deadline(self, batch: Batch) -> str:
        return str(timedelta(seconds=batch.delay_bound))

    @admin.display(description="units")
    def progress_table(self, batch: Batch) -> SafeString:
        progress = selectors.batch_progress(batch, now=timezone.now())
        rows = [
            ("waiting", progress.waiting),
            ("in progress", progress.in_progress),
            ("validated", progress.validated),
            ("failed", progress.failed),
            ("throughput", f"{progress.per_hour:,.1f} units per hour"),
            ("time left", _duration(progress.seconds_left)),
        ]
        return format_html(
            '{}<table class="batch-progress">{}</table><p><a href="{}">The batch\'s page</a></p>',
            self.progress_bar(batch),
            format_html_join("", '<tr><th scope="row">{}</th><td>{}</td></tr>', rows),
            reverse("batch_page", args=[batch.pk]),
        )

    @admin.display(description="result")
    def result_link(self, batch: Batch) -> SafeString | str:
        if batch.assimilation_error:
            return f"no result: the app could not assimilate the outputs ({batch.assimilation_error})"
        if not batch.result:
            return (
                "cancelled: no result"
                if batch.state == BatchState.CANCELLED
                else "not yet: the batch is running"
            )
        url = reverse("admin:science_batch_result", args=[batch.pk])
        link = format_html('<a href="{}" download>Download {}</a>', url, batch.result.name.rsplit("/", 1)[-1])
        if batch.result.name.endswith(".png"):
            return format_html(
                '{}<br><img src="{}" alt="the assembled result of {}" style="max-width:100%">',
                link,
                url,
                batch.name,
            )
        return link

    @admin.display(description="failed units")
    def failures(self, batch: Batch) -> SafeString | str:
        failed = selectors.failed_units(batch, limit=SHOWN_FAILURES)
        if not failed:
            return "none"
        rows = [(f.index, f.name, f.reason, f.last_error or "—") for f in failed]
        more = " (the first 100)" if len(failed) == SHOWN_FAILURES else ""
        return format_html(
            "<table><tr><th>unit</th><th>name</th><th>reason</th><th>last error</th></tr>{}</table>{}",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
            more,
        )

    @admin.display(description="corrected units")
    def corrections(self, batch: Batch) -> str:
        corrected = selectors.corrected_units(batch)
        if not corrected:
            return "none"
        made = f"; the result was made again {batch.revision} time(s)" if batch.revision else ""
        return (
            f"{len(corrected)} unit(s) had a cheater's answer replaced after validation: "
            f"{', '.join(str(index) for index in corrected)}{made}"
        )

    # -- cancelling ----------------------------------------------------------------------
    @admin.action(description="Cancel the selected batches", permissions=["change"])
    def cancel_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        for batch in queryset:
            try:
                changed = actions.cancel(batch.pk)
            except DomainError as error:
                self.message_user(request, f"{batch}: {error.message}", messages.WARNING)
            else:
                self.message_user(request, f"{batch}: cancelled ({changed} units called off so far)")

    # -- extra pages: the result file and the API token -------------------------------------
    def get_urls(self) -> list:
        extra = [
            path(
                "<int:batch_id>/result/",
                self.admin_site.admin_view(self.result_view),
                name="science_batch_result",
            ),
            path("api-token/", self.admin_site.admin_view(self.token_view), name="science_api_token"),
        ]
        return extra + super().get_urls()

    def result_view(self, request: HttpRequest, batch_id: int) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = access.batches_of(request.user).filter(pk=batch_id).first()
        if batch is None or not batch.result:
            raise Http404("no such batch result")
        name = batch.result.name.rsplit("/", 1)[-1]
        return FileResponse(batch.result.open("rb"), as_attachment=False, filename=name)

    def token_view(self, request: HttpRequest) -> HttpResponse:
        """Make a new API token for scripts and notebooks; it is shown once, here."""
        if not access.is_scientist(request.user):
            raise PermissionDenied
        token = None
        if request.method == "POST":
            token = tokens.issue_scientist_token(user=request.user, now=timezone.now())
        context = {
            **self.admin_site.each_context(request),
            "title": "API token",
            "token": token,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/science/api_token.html", context)
