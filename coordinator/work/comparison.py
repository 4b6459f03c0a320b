"""The ways an app may say its outputs are compared, which the app's row stores. The
comparison itself is the validator's (``validation.compare``)."""

from enum import StrEnum


class CompareMode(StrEnum):
    BITWISE = "bitwise"  # the outputs' SHA-256 are equal
    TOLERANCE = "tolerance"  # JSON outputs; numbers within the app's tolerances
