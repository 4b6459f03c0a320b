"""Volunteers' own pages: sign up, the account token, their computers, and teams."""

from __future__ import annotations

from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from coordinator.accounts import teams
from coordinator.accounts.limits import record_signup
from coordinator.accounts.models import Team, Volunteer
from coordinator.accounts.services import create_volunteer, issue_account_token
from coordinator.community import personal_data
from coordinator.community.badges import credit_badge
from coordinator.community.deletion import delete_account
from coordinator.community.selectors import team_badges, volunteer_badges
from coordinator.core import keys
from coordinator.core.errors import DomainError
from coordinator.core.throttles import PageRateThrottle, client_address
from coordinator.standing.credit import rac_now
from coordinator.validation.models import LedgerEntry
from coordinator.validation.selectors import credit_history
from coordinator.web.boinc_views import boinc_context
from coordinator.web.charts import bar_chart
from coordinator.web.client_views import install_context
from coordinator.web.forms import DeleteAccountForm, SignupForm, TeamForm
from coordinator.web.selectors import team_credit_per_day

NEW_TOKEN = "tessera-new-token"  # the session key that carries a fresh token to one page view
SHOWN_MEMBERS = 200
SHOWN_ENTRIES = 50
CHART_DAYS = 30


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # The API's signup limit (THROTTLE_SIGNUP, per address), shared by this page.
        if not PageRateThrottle("signup").allow_request(request, None):
            form.add_error(None, "Too many accounts were made from your address lately; try again later.")
        else:
            try:
                now = timezone.now()
                volunteer, token = create_volunteer(
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password"],
                    email=form.cleaned_data["email"],
                    now=now,
                    consent=(form.cleaned_data["listed"], form.cleaned_data["email_ok"]),
                )
            except DomainError as error:
                form.add_error("password" if error.code == "weak_password" else "username", error.message)
            else:
                record_signup(volunteer=volunteer, address=client_address(request), now=now)
                login(request, volunteer.user, backend="django.contrib.auth.backends.ModelBackend")
                request.session[NEW_TOKEN] = token
                return redirect("account")
    return render(
        request, "web/signup.html", {"form": form, "nav": "account"}, status=400 if form.errors else 200
    )


def signed_in_volunteer(request: HttpRequest) -> Volunteer:
    assert request.user.is_authenticated  # its views are login_required
    volunteer = Volunteer.objects.select_related("team").filter(user=request.user).first()
    if volunteer is None:
        raise Http404("this account is not a volunteer's")
    return volunteer


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The volunteer's page: credit, the token to attach a computer (shown once), computers."""
    volunteer = signed_in_volunteer(request)
    if request.method == "POST" and "new_token" in request.POST:
        request.session[NEW_TOKEN] = issue_account_token(volunteer=volunteer, now=timezone.now())
        return redirect("account")
    if request.method == "POST" and "listed" in request.POST:  # the stats export (docs/boinc.md)
        Volunteer.objects.filter(pk=volunteer.pk).update(listed=request.POST["listed"] == "yes")
        return redirect("account")
    now = timezone.now()
    context = {
        "nav": "account",
        "volunteer": volunteer,
        "recent": rac_now(volunteer.rac, volunteer.rac_time, now),
        "token": request.session.pop(NEW_TOKEN, None),
        "hosts": volunteer.hosts.order_by("name", "pk"),
        # Grants and reversals alike: a reversal shows the grant it takes back, and a reversed
        # grant the reversal that took it back.
        "entries": LedgerEntry.objects.filter(volunteer=volunteer)
        .select_related("host", "unit", "reversal")
        .order_by("-seq")[:SHOWN_ENTRIES],
        "public_key": _public_key(),
        "project_url": request.build_absolute_uri("/").rstrip("/"),
        "badges": volunteer_badges(volunteer, now),
        **install_context(request),
        "chart": bar_chart(
            "Your credit per day, last 30 days (UTC)",
            [
                (d.day.strftime("%b %d"), d.credit)
                for d in credit_history(volunteer=volunteer, days=CHART_DAYS, now=now)
            ],
            unit="credit",
            label_every=5,
        ),
    }
    context["boinc"] = boinc_context(request, volunteer.pk)
    return render(request, "web/account.html", context)


def _public_key() -> str:
    try:
        return keys.project_public_key_b64()
    except keys.ProjectKeyError:
        return "(the project has no signing key yet)"


@login_required
def team_new(request: HttpRequest) -> HttpResponse:
    volunteer = signed_in_volunteer(request)
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = teams.create_team(founder=volunteer, name=form.cleaned_data["name"])
        except DomainError as error:
            form.add_error("name", error.message)
        else:
            return redirect("team", team_id=team.pk)
    return render(
        request, "web/team_new.html", {"form": form, "nav": "teams"}, status=400 if form.errors else 200
    )


def team(request: HttpRequest, team_id: int) -> HttpResponse:
    found = Team.objects.filter(pk=team_id).first() if 0 < team_id < 2**63 else None
    if found is None:
        raise Http404("no such team")
    members = found.members.select_related("user").order_by("-total_credit", "pk")
    viewer = Volunteer.objects.filter(user=request.user).first() if request.user.is_authenticated else None
    context = {
        "nav": "teams",
        "team": found,
        "recent": rac_now(found.rac, found.rac_time, timezone.now()),
        "badges": team_badges(found, timezone.now()),
        "members": [(member, credit_badge(member.total_credit)) for member in members[:SHOWN_MEMBERS]],
        "member_count": members.count(),
        "viewer": viewer,
        "chart": bar_chart(
            "Credit of its members per day, last 30 days (UTC)",
            [
                (day.strftime("%b %d"), credit)
                for day, credit in team_credit_per_day(team_id=found.pk, days=CHART_DAYS, now=timezone.now())
            ],
            unit="credit",
            label_every=5,
        ),
    }
    return render(request, "web/team.html", context)


@login_required
@require_POST
def team_join(request: HttpRequest, team_id: int) -> HttpResponse:
    try:
        teams.join_team(volunteer=signed_in_volunteer(request), team_id=team_id)
    except DomainError as error:
        raise Http404(error.message) from error
    return redirect("team", team_id=team_id)


@login_required
@require_POST
def team_leave(request: HttpRequest) -> HttpResponse:
    volunteer = signed_in_volunteer(request)
    teams.leave_team(volunteer=volunteer)
    return redirect("team", team_id=volunteer.team_id) if volunteer.team_id else redirect("account")


@login_required
def account_data(request: HttpRequest) -> StreamingHttpResponse:
    """Everything the project holds about the signed-in volunteer, as a JSON download."""
    volunteer = signed_in_volunteer(request)
    response = StreamingHttpResponse(
        personal_data.export(volunteer, now=timezone.now()), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="tessera-account-{volunteer.pk}.json"'
    return response


@login_required
def account_delete(request: HttpRequest) -> HttpResponse:
    """Delete the signed-in volunteer's account, once they confirm with their password."""
    volunteer = signed_in_volunteer(request)
    form = DeleteAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not request.user.check_password(form.cleaned_data["password"]):
            form.add_error("password", "That is not your password; nothing was deleted.")
        else:
            delete_account(volunteer.pk, now=timezone.now(), by="volunteer")
            logout(request)
            return render(request, "web/account_deleted.html")
    status = 400 if form.errors else 200
    return render(request, "web/account_delete.html", {"nav": "account", "form": form}, status=status)
