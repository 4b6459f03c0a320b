"""The admin site shows which volunteers' hosts were caught returning wrong results."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coordinator.accounts.models import Host
from coordinator.testing import make_host

pytestmark = pytest.mark.django_db


def test_volunteers_caught_cheating_are_listed_with_their_invalid_results():
    cheat_host, _ = make_host(name="cheatbox")
    honest_host, _ = make_host(name="honestbox")
    Host.objects.filter(pk=cheat_host.pk).update(invalid_count=7)
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "a long admin passphrase")
    client = Client()
    client.force_login(admin)

    caught = client.get("/admin/accounts/volunteer/?cheating=yes")
    clean = client.get("/admin/accounts/volunteer/?cheating=no")

    assert caught.status_code == 200 and clean.status_code == 200
    assert cheat_host.volunteer.user.username in caught.content.decode()
    assert honest_host.volunteer.user.username not in caught.content.decode()
    assert honest_host.volunteer.user.username in clean.content.decode()
    assert '<td class="field-invalid_results">7</td>' in caught.content.decode()


def test_the_admin_site_is_refused_to_volunteers():
    host, _ = make_host()
    client = Client()
    client.force_login(host.volunteer.user)

    assert client.get("/admin/accounts/volunteer/").status_code == 302
