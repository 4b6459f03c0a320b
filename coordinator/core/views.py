"""The coordinator's front page: what it is, how busy it is, where to go next."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from coordinator.work.selectors import replica_counts, unit_counts, units_awaiting_validation


def home(request: HttpRequest) -> HttpResponse:
    context = {
        "units": unit_counts(),
        "awaiting_validation": units_awaiting_validation(),
        "replicas": replica_counts(),
    }
    return render(request, "core/home.html", context)
