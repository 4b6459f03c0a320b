"""Domain errors raised by services; ``api_errors`` maps each kind to one HTTP status.

Services never know about HTTP. They raise one of these with a stable ``code`` a client
can act on and a message a person can read.
"""


class DomainError(Exception):
    """Base of every refusal a service makes on purpose."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    """The request is well formed but its content breaks a rule."""

    code = "invalid_input"


class AuthenticationRejected(DomainError):
    """Who sent this cannot be established: bad token, key, signature, clock or replay."""

    code = "authentication_failed"


class PermissionRefused(DomainError):
    """The sender is known but may not touch this object."""

    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request contradicts what the coordinator already recorded."""

    code = "conflict"


class LimitReached(DomainError):
    """The sender may not do this again yet (a limit per day, per volunteer…)."""

    code = "limit_reached"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 0) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    code = "too_large"


class Unavailable(DomainError):
    """The coordinator cannot answer this now: not set up yet (an operator must act), or down
    for maintenance (``retry_after`` seconds)."""

    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 0) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
