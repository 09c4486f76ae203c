"""Django's PostgreSQL backend, with a health check that costs no round trip.

With CONN_HEALTH_CHECKS, Django pings a kept connection (`SELECT 1`) before its first
statement in each request or task: a round trip that does nothing else, on every order a
worker sends (its first statement is the claim, inside a transaction) and on every request.

A server that ends a connection (a restart, `pg_terminate_backend`, `idle_session_timeout`, a
crash of another backend) sends its last message and closes the socket, so the socket of an
idle connection it has ended is ready to read. The check here looks at the socket first
(`poll` with no wait): quiet, the connection is taken as it is; anything there (also a
notification or a changed server parameter) gets Django's own ping, which reads it, and a
connection that fails the ping is replaced before the statement, as before. A connection
whose server vanished without closing it (a host or network gone) fails at its first
statement either way: the ping would wait on the same dead socket.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


def quiet(raw: Any) -> bool:
    """An open, idle connection with nothing waiting on its socket."""
    if raw.closed or raw.broken or raw.pgconn.transaction_status != TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
    return not poller.poll(0)  # POLLHUP and POLLERR are reported unasked


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
