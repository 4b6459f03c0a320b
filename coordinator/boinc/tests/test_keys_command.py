"""``manage.py keys … --boinc``: the BOINC code-signing key made once, shown without its private
half, and rotated the way BOINC clients accept, every app file signed again."""

from __future__ import annotations

import io
import stat

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from coordinator.boinc import crypt, keys
from coordinator.boinc.models import BoincAppFile

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("keys", *args, stdout=out)
    return out.getvalue()


def test_create_show_and_rotate_the_boinc_key(boinc_app):
    with pytest.raises(CommandError, match="already exists"):
        run("create", "--boinc")  # boinc_app made one
    first = keys.public_text()
    shown = run("show", "--boinc")
    assert first in shown and "PRIVATE" not in shown
    assert stat.S_IMODE(keys.key_path().stat().st_mode) == 0o600

    rotated = run("rotate", "--boinc")

    assert "2 app files signed again" in rotated
    second = keys.public_text()
    assert second != first and keys.key_for_client(first)[0] == second
    n, e = crypt.parse_public_key_text(second)
    for row in BoincAppFile.objects.all():
        with default_storage.open(row.storage_name, "rb") as handle:
            assert crypt.verify_file_bytes(n, e, handle.read(), row.signature)


def test_show_without_a_key_says_how_to_make_one():
    with pytest.raises(CommandError, match="keys create --boinc"):
        run("show", "--boinc")
    assert "created the BOINC code-signing key" in run("create", "--boinc")
