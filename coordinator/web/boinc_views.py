"""The volunteer's BOINC access, on their account page (docs/boinc.md, "Accounts").

Turning it on takes the account's password: the project then keeps a verifier of the hash a
BOINC Manager sends for email and password, and hands out a first account key. Keys are shown
once; a new one can be made, and turning access off revokes them all.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from coordinator.accounts.models import Volunteer
from coordinator.boinc import accounts
from coordinator.boinc.models import BoincAccess
from coordinator.core.errors import DomainError

NEW_BOINC_KEY = "tessera-new-boinc-key"  # the session key that carries a fresh key to one page view
BOINC_NOTE = "tessera-boinc-note"  # and what became of the last change


def boinc_context(request: HttpRequest, volunteer_id: int) -> dict:
    """What the account page shows of BOINC access."""
    return {
        "enabled": BoincAccess.objects.filter(volunteer_id=volunteer_id).exists(),
        "key": request.session.pop(NEW_BOINC_KEY, None),
        "note": request.session.pop(BOINC_NOTE, None),
        "master_url": request.build_absolute_uri("/boinc/"),
    }


@login_required
@require_POST
def boinc_access(request: HttpRequest) -> HttpResponse:
    assert request.user.is_authenticated  # login_required
    volunteer = Volunteer.objects.filter(user=request.user).first()
    if volunteer is None:
        raise Http404("this account is not a volunteer's")
    now = timezone.now()
    action = request.POST.get("action", "")
    if action == "enable":
        try:
            password = request.POST.get("password", "")
            key = accounts.enable_access(volunteer=volunteer, password=password, now=now)
        except DomainError as error:
            request.session[BOINC_NOTE] = f"BOINC access is still off: {error.message}."
        else:
            request.session[NEW_BOINC_KEY] = key
    elif action == "new_key" and BoincAccess.objects.filter(volunteer=volunteer).exists():
        key = accounts.issue_key(volunteer=volunteer, now=now, issued_by="account page")
        request.session[NEW_BOINC_KEY] = key
    elif action == "disable":
        accounts.disable_access(volunteer=volunteer, now=now)
        request.session[BOINC_NOTE] = "BOINC access is off: every BOINC account key stopped working."
    return redirect("account")
