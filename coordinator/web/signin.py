"""The sign-in forms of /signin and /admin/login/, with a limit on wrong passwords per address.

Without it the pages would let anyone guess passwords as fast as they can post; with it a
guesser gets ``THROTTLE_TOKEN`` tries per address, the pages and the token endpoint together.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from coordinator.core.throttles import FailedSigninThrottle

TOO_MANY = "Too many wrong passwords from your address lately; try again later."


class LimitedSignin:
    """Mixin for Django's AuthenticationForm: refuse at once past the limit, count failures."""

    request: Any

    def clean(self) -> dict[str, Any]:
        if self.request is None:  # a form built outside a request: nothing to key the limit on
            return super().clean()  # type: ignore[misc]
        throttle = FailedSigninThrottle()
        if not throttle.allow_request(self.request, None):
            raise ValidationError(TOO_MANY, code="throttled")
        try:
            return super().clean()  # type: ignore[misc]
        except ValidationError:
            throttle.record_failure()
            raise


class SigninForm(LimitedSignin, AuthenticationForm):
    pass


class AdminSigninForm(LimitedSignin, AdminAuthenticationForm):
    pass
