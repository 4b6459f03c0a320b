"""Forms of the public pages; their rules are the services', so the API and the pages agree."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UsernameField
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

from coordinator.accounts import names
from coordinator.core.errors import InvalidInput


def visible_name(value: str) -> None:
    """The names rule on hidden characters, said before the pattern's vaguer message."""
    try:
        names.refuse_hidden_characters(value)
    except InvalidInput as error:
        raise ValidationError(error.message, code=error.code) from error


class SignupForm(forms.Form):
    username = UsernameField(
        max_length=150,
        validators=[visible_name, UnicodeUsernameValidator()],
        help_text="Shown on the leaderboards: letters, digits and @ . + - _ only.",
    )
    email = forms.EmailField(required=False, help_text="Optional; never shown.")
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    password_again = forms.CharField(label="Password, again", widget=forms.PasswordInput, strip=False)
    listed = forms.BooleanField(
        required=False,
        label="Show my name and credit on the leaderboards and in the statistics export",
        help_text="Unticked, you and your computers are left out of them; you can change it later.",
    )
    email_ok = forms.BooleanField(
        required=False, label="The project may email me (news, and about my account)"
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


class TeamForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Up to 64 characters, unique.")


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput, strip=False, help_text="Your password, to say it is you."
    )
    sure = forms.BooleanField(label="I understand that this cannot be undone")
