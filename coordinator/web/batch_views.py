"""Scientists' batch pages: progress, and an image batch's picture growing tile by tile."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from coordinator.core.errors import NotFound
from coordinator.science import access, selectors
from coordinator.work.models import Batch, BatchState

REFRESH_SECONDS = 15


def _batch(request: HttpRequest, batch_id: int) -> Batch:
    if not access.is_scientist(request.user) or not 0 < batch_id < 2**63:
        raise Http404("no such batch")
    try:
        return access.batch_of(request.user, batch_id)
    except NotFound as error:  # another scientist's batch is as absent as a missing one
        raise Http404("no such batch") from error


@login_required
def batch(request: HttpRequest, batch_id: int) -> HttpResponse:
    found = _batch(request, batch_id)
    running = found.state in (BatchState.SPLITTING, BatchState.RUNNING)
    context = {
        "nav": "batches",
        "batch": found,
        "progress": selectors.batch_progress(found, now=timezone.now()),
        "has_picture": selectors.has_preview(found),
        "refresh": REFRESH_SECONDS if running else None,
    }
    return render(request, "web/batch.html", context)


@login_required
def batch_picture(request: HttpRequest, batch_id: int) -> HttpResponse:
    picture = selectors.preview_picture(_batch(request, batch_id))
    if picture is None:
        raise Http404("this batch's app draws no picture")
    response = HttpResponse(picture, content_type="image/png")
    response["Cache-Control"] = "no-store"  # it grows as units validate
    return response
