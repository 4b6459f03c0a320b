"""Asks for far more memory than the client allows a task."""

hoard = bytearray(4 * 1024**3)
