"""Waking the pipeline stage when the journal grows, instead of polling it.

- PostgreSQL: each receipt runs `pg_notify` in its transaction (delivered on commit, to every replica); the stage
  LISTENs on a connection of its own.
- SQLite (one node): after its commit, a web worker sends one datagram to the stage's doorbell, a Unix socket in
  Linux's abstract namespace named after the database file (no file to create or clean up, no path length
  limit). Sending never blocks and never fails a request: with no stage listening, or the socket buffer full
  (the stage has work queued anyway), the datagram is dropped.

Either way the stage also wakes every `SIGNALLED_FALLBACK_SECONDS` on its own: a missed signal delays a decision,
never loses it. Elsewhere (no abstract sockets), or when the signal cannot be set up, the stage polls every
`POLL_SECONDS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import select
import socket
import sys
import threading
from typing import Any, Protocol

import sqlalchemy as sa

log = logging.getLogger(__name__)

# How often a stage without a signal looks at the journal: how late a decision can be.
POLL_SECONDS = 1.0
# How often a stage with a signal looks anyway: how late a decision can be when a signal is lost. Each look is a
# query (and a transaction) in an otherwise idle process: long enough that an idle worker sleeps, short enough
# that a lost signal costs seconds, not a page.
SIGNALLED_FALLBACK_SECONDS = 5.0


class Listener(Protocol):
    """What the stage waits on."""

    # How long the stage waits for a signal before it looks at the journal anyway.
    fallback_seconds: float

    def wait(self, timeout: float) -> bool:
        """Block until signalled or `timeout` seconds passed; True when signalled."""
        ...

    def close(self) -> None:
        """Release the socket or connection."""
        ...


def doorbell_address(database_url: str) -> str | None:
    """The abstract socket name of a SQLite database's stage, or None where there is none (PostgreSQL, not Linux,
    an in-memory database)."""
    if not sys.platform.startswith("linux"):
        return None
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    from pathlib import Path

    path = str(Path(url.database).resolve())
    return "\0incident-bridge-journal-" + hashlib.sha256(path.encode()).hexdigest()[:32]


class Doorbell:
    """The web side: one unbound datagram socket per process, created on first use (after gunicorn's fork)."""

    def __init__(self, database_url: str) -> None:
        self.address = doorbell_address(database_url)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def ring(self) -> None:
        """Tell the stage the journal grew; never blocks, never raises."""
        if self.address is None:
            return
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(b"j", self.address)
        except OSError:  # no stage listening (ECONNREFUSED), or its buffer is full (it has work anyway)
            pass


class SocketListener:
    """The stage side of the SQLite doorbell."""

    fallback_seconds = SIGNALLED_FALLBACK_SECONDS

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(64):  # one wake-up for every ring so far
                pass
        return True

    def close(self) -> None:
        self.sock.close()


class PostgresListener:
    """The stage side on PostgreSQL: LISTEN on a connection of its own, in autocommit, taken from the store's engine
    (so it has the same URL, driver and connect timeout) and never returned to the pool.

    `wait` raises the driver's error when the connection is lost: the stage then sets up a new listener."""

    fallback_seconds = SIGNALLED_FALLBACK_SECONDS

    def __init__(self, engine: sa.Engine, channel: str) -> None:
        self.raw: Any = engine.raw_connection()
        conn: Any = self.raw.driver_connection  # psycopg's Connection
        conn.autocommit = True
        conn.execute(f"LISTEN {channel}")
        self.conn = conn

    def wait(self, timeout: float) -> bool:
        # psycopg's own `notifies(timeout=...)` wakes every 0.1 s (to notice a Ctrl-C): an idle stage would wake ten
        # times a second. Select on the connection's socket instead, then read what arrived without waiting.
        if self._drain():  # read already, with an earlier notification
            return True
        ready, _, _ = select.select([self.conn.fileno()], [], [], timeout)
        return bool(ready) and self._drain()

    def _drain(self) -> bool:
        """Consume every notification received so far, without waiting; whether there was any."""
        got = False
        for _ in self.conn.notifies(timeout=0.0):
            got = True
        return got

    def close(self) -> None:
        self.raw.invalidate()  # a LISTENing autocommit connection must not go back to the pool


class PollListener:
    """No signal available: wake on the poll only."""

    fallback_seconds = POLL_SECONDS

    def __init__(self) -> None:
        self.event = threading.Event()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    def close(self) -> None:
        self.event.set()


def listener_for(engine: sa.Engine, database_url: str, channel: str) -> Listener:
    """The best listener for this database; polling when the signal cannot be set up (logged once)."""
    try:
        if engine.dialect.name == "postgresql":
            return PostgresListener(engine, channel)
        address = doorbell_address(database_url)
        if address is not None:
            return SocketListener(address)
    except OSError as exc:  # another stage listens on this database already (EADDRINUSE), or no sockets
        log.warning("pipeline stage: no wake-up signal (%s); polling the journal every %.0f s", exc, POLL_SECONDS)
    except Exception as exc:  # the LISTEN connection failed: polling still decides everything
        log.warning("pipeline stage: cannot LISTEN (%s); polling the journal every %.0f s",
                    type(exc).__name__, POLL_SECONDS)
    return PollListener()
