"""The coordinator's front page: what it is, how busy it is, where to go next."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from coordinator.work.selectors import replica_counts, unit_counts


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "core/home.html", {"units": unit_counts(), "replicas": replica_counts()})
