"""What the community app tells the layers above it, without importing them.

``account_deleting`` is sent inside :func:`coordinator.community.deletion.delete_account`'s
transaction, before the account is emptied, with ``volunteer``; a receiver forgets what its
layer holds about the volunteer and may return ``{"cpid": …}``, the CPID stats sites knew the
volunteer by (the boinc app: it computes it from the email, which is about to go).
"""

from __future__ import annotations

from django.dispatch import Signal

account_deleting = Signal()
