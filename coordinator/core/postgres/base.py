"""Django's PostgreSQL backend, with a health check that costs no round trip.

A kept connection is checked before each request reuses it (``CONN_HEALTH_CHECKS``), and
Django checks with ``SELECT 1``: a round trip to the server on every request, 2.4 % of the
web workers' profile samples in ``bench.throughput``. A server that restarts, or ends the
session for any reason, says so on the socket (a FATAL message, then the end of the
stream), so between requests the socket of a connection that was dropped has something
to read. A connection idle outside any transaction with nothing to read is kept without
asking; any other is asked with ``SELECT 1``, as before.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper
from psycopg.pq import TransactionStatus


class DatabaseWrapper(PostgresWrapper):
    def is_usable(self) -> bool:
        raw = self.connection
        if raw is None or raw.closed:
            return False
        if raw.info.transaction_status == TransactionStatus.IDLE and not _has_input(raw.fileno()):
            return True
        return super().is_usable()


def _has_input(fd: int) -> bool:
    """Whether the server sent anything (or closed the stream) that nobody has read."""
    poll = select.poll()
    poll.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poll.poll(0))
