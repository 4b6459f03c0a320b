"""Scientists' API tokens: who may submit, watch and cancel batches from a script."""

from django.conf import settings
from django.db import models


class ScientistToken(models.Model):
    """One API token per scientist, kept only as its SHA-256 (shown once when made)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="scientist_token"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField()

    def __str__(self) -> str:
        return f"API token of {self.user}"
