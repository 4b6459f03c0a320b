"""What Tessera keeps to serve stock BOINC clients (docs/boinc.md).

A BOINC client proves who it is with a bearer key (BOINC's "account key", sent in every
scheduler request), not with a host key of its own, so its hosts are a weaker trust class
(``accounts.Host.bearer``). The keys are kept as SHA-256 only; the password verifier exists only
for volunteers who turned BOINC access on.
"""

from __future__ import annotations

from django.db import models

from coordinator.accounts.models import Host, Volunteer


class BoincAccountKey(models.Model):
    """A key a BOINC client attaches with: shown once, revocable, kept as its SHA-256."""

    volunteer = models.ForeignKey(Volunteer, on_delete=models.CASCADE, related_name="boinc_keys")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField()
    revoked = models.DateTimeField(null=True, blank=True)
    # "account page", "lookup_account.php", "create_account.php": where it was handed out.
    issued_by = models.CharField(max_length=32)

    class Meta:
        verbose_name = "BOINC account key"

    def __str__(self) -> str:
        return f"BOINC key {self.pk} of {self.volunteer}"


class BoincAccess(models.Model):
    """A volunteer's BOINC access: on when this row exists. ``passwd_verifier`` is a Django
    password hash of BOINC's ``md5(password + email)``, the credential a BOINC client sends to
    lookup_account.php."""

    volunteer = models.OneToOneField(
        Volunteer, primary_key=True, on_delete=models.CASCADE, related_name="boinc_access"
    )
    passwd_verifier = models.CharField(max_length=256, blank=True, default="")
    enabled = models.DateTimeField()

    class Meta:
        verbose_name = "BOINC access"
        verbose_name_plural = "BOINC access"


class BoincHost(models.Model):
    """A Tessera host a BOINC client made: BOINC's hostid is the host's id."""

    host = models.OneToOneField(Host, primary_key=True, on_delete=models.CASCADE, related_name="boinc")
    host_cpid = models.CharField(max_length=64, blank=True, default="")
    rpc_seqno = models.PositiveBigIntegerField(default=0)
    key = models.ForeignKey(BoincAccountKey, null=True, on_delete=models.SET_NULL, related_name="+")
    client_version = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        verbose_name = "BOINC host"


class BoincAppFile(models.Model):
    """One file of an app version made for BOINC clients (``AppVersion.runtime`` "boinc"): our
    launcher or the app's executable, kept in the storage and signed with the BOINC key."""

    app_version = models.ForeignKey("work.AppVersion", on_delete=models.CASCADE, related_name="boinc_files")
    name = models.CharField(max_length=128, unique=True)  # one flat namespace per project
    open_name = models.CharField(max_length=64)  # its name in the task's slot
    main_program = models.BooleanField(default=False)
    storage_name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    md5 = models.CharField(max_length=32)
    signature = models.TextField()  # BOINC's RSA signature text (coordinator.boinc.crypt)

    class Meta:
        verbose_name = "BOINC app file"
        ordering = ["app_version", "-main_program", "name"]
