"""``/account/science``: which apps a volunteer's computers run, per venue, and where each
computer is (BOINC's project preferences and venues)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.science_choice import DEFAULT, VENUES, choice_for, save_choice
from coordinator.web.account_views import signed_in_volunteer
from coordinator.work.models import App

VENUE_CHOICES = list(VENUES.items())


class ScienceForm(forms.Form):
    venue = forms.ChoiceField(choices=VENUE_CHOICES)
    every_app = forms.BooleanField(required=False, label="Every app, new ones too")
    apps = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Only these apps"
    )
    beta = forms.BooleanField(required=False, label="Beta versions too (test applications)")
    reset = forms.BooleanField(required=False, label="Use the default's choice for this venue")

    def __init__(self, *args: Any, app_choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["apps"]).choices = app_choices

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("reset") and not data.get("every_app") and not data.get("apps"):
            raise forms.ValidationError("Pick at least one app, or every app.")
        if data.get("reset") and data.get("venue") == DEFAULT:
            raise forms.ValidationError("The default has nothing to fall back to: pick its apps instead.")
        return data


class VenueForm(forms.Form):
    host = forms.ModelChoiceField(queryset=Host.objects.none())
    venue = forms.ChoiceField(choices=VENUE_CHOICES)

    def __init__(self, *args: Any, volunteer: Volunteer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the volunteer's own computers: another's host id is refused as not a choice.
        cast(forms.ModelChoiceField, self.fields["host"]).queryset = volunteer.hosts.all()


def _venues(volunteer: Volunteer, apps: list[App]) -> list[dict[str, Any]]:
    rows = []
    for venue, label in VENUES.items():
        choice = choice_for(volunteer.science, venue, volunteer.beta_work)
        own = venue == DEFAULT or venue in (volunteer.science or {})
        chosen = [app for app in apps if choice.apps is None or app.pk in choice.apps]
        rows.append(
            {
                "venue": venue,
                "label": label,
                "own": own,
                "every": choice.apps is None,
                "apps": chosen,
                "beta": choice.beta,
            }
        )
    return rows


@login_required
def science(request: HttpRequest) -> HttpResponse:
    volunteer = signed_in_volunteer(request)
    apps = list(App.objects.order_by("name"))
    app_choices = [(str(app.pk), app.title or app.name) for app in apps]
    science_form = ScienceForm(app_choices=app_choices)
    venue_form = VenueForm(volunteer=volunteer)
    if request.method == "POST" and "host" in request.POST:
        venue_form = VenueForm(request.POST, volunteer=volunteer)
        if venue_form.is_valid():
            Host.objects.filter(pk=venue_form.cleaned_data["host"].pk, volunteer=volunteer).update(
                venue=venue_form.cleaned_data["venue"]
            )
            return redirect("account_science")
    elif request.method == "POST":
        science_form = ScienceForm(request.POST, app_choices=app_choices)
        if science_form.is_valid():
            data = science_form.cleaned_data
            chosen = None if data["every_app"] else [int(pk) for pk in data["apps"]]
            save_choice(volunteer.pk, data["venue"], chosen, data["beta"], reset=data["reset"])
            return redirect("account_science")
    context = {
        "nav": "account",
        "venues": _venues(volunteer, apps),
        "apps": apps,
        "hosts": volunteer.hosts.order_by("name", "pk"),
        "venue_choices": VENUE_CHOICES,
        "science_form": science_form,
        "venue_form": venue_form,
    }
    status = 400 if science_form.errors or venue_form.errors else 200
    return render(request, "web/science.html", context, status=status)
