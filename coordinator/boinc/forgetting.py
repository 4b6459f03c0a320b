"""What the boinc app forgets when a volunteer deletes their account
(``community.signals.account_deleting``): their BOINC access and keys, their hosts' BOINC
cross-project ids; and the CPID stats sites knew them by, for the deletion list."""

from __future__ import annotations

from typing import Any

from coordinator.accounts.models import Volunteer
from coordinator.boinc.models import BoincAccess, BoincAccountKey, BoincHost
from coordinator.boinc.stats import user_cpid


def forget_volunteer(sender: Any, *, volunteer: Volunteer, **kwargs: Any) -> dict[str, str]:
    cpid = user_cpid(volunteer.cross_project_id, volunteer.user.email) if volunteer.cross_project_id else ""
    BoincAccess.objects.filter(volunteer=volunteer).delete()
    BoincAccountKey.objects.filter(volunteer=volunteer).delete()
    BoincHost.objects.filter(host__volunteer=volunteer).update(host_cpid="")
    return {"cpid": cpid}
