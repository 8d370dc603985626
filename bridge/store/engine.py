"""Connecting to the database: the engine for a URL (SQLite's pragmas, BEGIN IMMEDIATE and a busy timeout cut to
what is left of a write's budget; PostgreSQL's connect timeout), `is_lock_timeout` for the drivers' "could not get
the lock in time" errors, and `database_error`, the one-line ConfigError naming the setting (BRIDGE_DATABASE_URL)
when the database cannot be used, with the password never shown.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.store.migrations import SchemaStatus

# Processes that answer no sender (the worker: pipeline stage and delivery; the supervisor; start-up) wait this
# long (at least), then log and try again: what SQLite's busy timeout was before requests were bounded.
BACKGROUND_LOCK_TIMEOUT = 30.0

# How long opening a PostgreSQL connection may take (libpq's own default is to wait forever on a host that drops
# packets, so a start or a reconnect would hang instead of failing); a URL's own ?connect_timeout= wins.
CONNECT_TIMEOUT_SECONDS = 10


def create_engine(url: str, *, busy_timeout: float = BACKGROUND_LOCK_TIMEOUT) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign-key enforcement.

    `busy_timeout` (seconds): how long SQLite waits for a lock outside a write transaction (reads in WAL mode
    practically never wait). A write transaction passes its own deadline in `WRITE_OPTION`: SQLite then waits
    for what is left of the write's budget once the writer lock is held (`bridge.store.writer`).
    """
    if url.startswith("sqlite"):
        synchronous = sqlite_synchronous()
        base_ms = busy_milliseconds(busy_timeout)
        engine = sa.create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False},
                                  pool_pre_ping=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
            # The driver's implicit transactions would defer BEGIN until the first write; take the write
            # lock at BEGIN IMMEDIATE instead so two writers never deadlock on a lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={base_ms}")
            cur.close()
            record.info[BUSY_KEY] = base_ms

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Writes (`Store.transaction`) take the write lock at BEGIN; reads begin deferred, so in WAL mode they
            # never wait for, nor hold up, a writer (every read used to queue for the one write lock).
            deadline = conn.get_execution_options().get(WRITE_OPTION)
            wanted = base_ms if deadline is None else busy_milliseconds(deadline - time.monotonic())
            set_busy_timeout(conn.connection.driver_connection, conn.info, wanted)
            conn.exec_driver_sql("BEGIN" if deadline is None else "BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    parsed = sa.make_url(url)
    if (parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2")
            and "connect_timeout" not in parsed.query):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


# The execution option that marks a connection's transaction as a write (SQLite: BEGIN IMMEDIATE); its value is
# the write's deadline on `time.monotonic`'s clock.
WRITE_OPTION = "bridge_write"
# Where a connection's current busy timeout (ms) is remembered (the pool record's `info`, which lives as long as the
# driver's connection), so it is set only when it has to change.
BUSY_KEY = "bridge_busy_ms"
# A busy timeout this close to the wanted one is left as it is: a PRAGMA per transaction would cost more than the
# milliseconds it corrects.
BUSY_SLACK_MS = 20


def busy_milliseconds(seconds: float) -> int:
    """A budget as SQLite's busy timeout: whole milliseconds, at least 1 (0 would not wait at all)."""
    return max(1, int(seconds * 1000))


def set_busy_timeout(driver_conn: Any, info: dict[str, Any], wanted_ms: int) -> None:
    """Set a SQLite driver connection's busy timeout to `wanted_ms`, unless it is within `BUSY_SLACK_MS` of it."""
    current = info.get(BUSY_KEY)
    if current is None or abs(current - wanted_ms) > BUSY_SLACK_MS:
        driver_conn.execute(f"PRAGMA busy_timeout={int(wanted_ms)}")
        info[BUSY_KEY] = wanted_ms


# SQLite's primary result codes that mean the database (its disk, its file) cannot take a write now.
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_FULL: "is full (no space left on its disk)",
    sqlite3.SQLITE_READONLY: "is read-only",
    sqlite3.SQLITE_IOERR: "cannot be written (an I/O error on its disk)",
    sqlite3.SQLITE_CANTOPEN: "cannot be opened",
}
# PostgreSQL SQLSTATE classes (or codes) with the same meaning: connection exceptions, read-only transactions,
# insufficient resources (disk full), an operator intervention (shutdown, restart), a system error.
_POSTGRES_UNAVAILABLE = (("08", "is unreachable"), ("25006", "is read-only"),
                         ("53", "is out of resources (disk full?)"), ("57P", "is shutting down or restarting"),
                         ("58", "cannot be written (a system error)"))
_ERRNO_UNAVAILABLE = {errno.ENOSPC: "is full (no space left on its disk)", errno.EROFS: "is read-only",
                      errno.EIO: "cannot be written (an I/O error)"}


def unavailable_problem(exc: BaseException) -> str | None:
    """What is wrong with the database when `exc` says it cannot take a write for a reason of its own (full,
    read-only, unreachable, restarting), else None (a bug of ours, or a lock timeout: `is_lock_timeout`).

    Looks at the driver's error (wrapped by SQLAlchemy or raw: the journal's hot path uses the driver) and at an
    OSError (the writer lock file next to a SQLite database on a full or read-only disk)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return "is unreachable"
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is None:
            text = str(orig)
            return next((p for word, p in (("disk is full", _SQLITE_UNAVAILABLE[sqlite3.SQLITE_FULL]),
                                           ("readonly", _SQLITE_UNAVAILABLE[sqlite3.SQLITE_READONLY]),
                                           ("disk I/O", _SQLITE_UNAVAILABLE[sqlite3.SQLITE_IOERR]))
                         if word in text), None)
        return _SQLITE_UNAVAILABLE.get(code & 0xFF)
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return next((problem for prefix, problem in _POSTGRES_UNAVAILABLE if state.startswith(prefix)), None)
    if isinstance(exc, sa.exc.OperationalError):
        return "is unreachable"  # PostgreSQL's driver could not connect (no SQLSTATE without a server)
    if isinstance(orig, OSError) and orig.errno in _ERRNO_UNAVAILABLE:
        return _ERRNO_UNAVAILABLE[orig.errno]
    return None


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether a driver error means a lock could not be had in time: SQLite's SQLITE_BUSY ("database is locked")
    or PostgreSQL's lock_not_available (55P03, `lock_timeout` ran out)."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        # Extended codes (SQLITE_BUSY_SNAPSHOT...) keep the primary code in their low byte.
        return (code & 0xFF) == sqlite3.SQLITE_BUSY if code is not None else "database is locked" in str(orig)
    return getattr(orig, "sqlstate", None) == "55P03"
SYNCHRONOUS_SETTING = "BRIDGE_SQLITE_SYNCHRONOUS"


def sqlite_synchronous() -> str:
    """SQLite's `synchronous` for the journal: NORMAL (the default) survives the bridge crashing or being killed;
    FULL also survives a power loss or an operating-system crash, at the cost of a sync of the log per commit."""
    value = os.environ.get(SYNCHRONOUS_SETTING, "NORMAL").strip().upper() or "NORMAL"
    if value not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"{SYNCHRONOUS_SETTING}={value!r} is not a SQLite synchronous mode",
                          hint="use NORMAL (the default: survives crashes of the bridge) or FULL (also survives "
                               "power loss)")
    return value


def redact_url(url: str) -> str:
    """`url` with its password shown as `***`, for messages and logs; also when SQLAlchemy cannot parse it."""
    try:
        shown = sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads (the very error being reported): mask "user:...@" alike
        # Greedy up to the last "@": a password may itself contain "@" or "/"; hiding too much is the safe side.
        return re.sub(r"(://[^:/@]*):.*@", r"\1:***@", url)
    # SQLAlchemy ends the password at its first "@"; a raw "@" in it would leave the rest shown as the host.
    return re.sub(r"(://[^:/@?#]*):[^/?#]*@", r"\1:***@", shown)


POSTGRES_EXTRA = "pip install 'incident-bridge[postgres]'"
EXAMPLE_URLS = "sqlite:///incident-bridge.db or postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME"


def database_error(url: str, exc: BaseException, setting: str = "BRIDGE_DATABASE_URL") -> ConfigError:
    """Why the database at `url` (from `setting`) cannot be used, as one line naming the setting and the fix.

    The password never appears: the URL is redacted and the driver's message is scrubbed of it.
    """
    shown = f"{setting}={redact_url(url)}"
    try:
        parsed: sa.URL | None = sa.make_url(url)
    except Exception:
        parsed = None
    if parsed is None:
        return ConfigError(f"{shown} is not a database URL", hint=f"set it to a URL like {EXAMPLE_URLS}")
    backend = parsed.get_backend_name()
    if isinstance(exc, sa.exc.NoSuchModuleError):
        if backend == "postgres":
            return ConfigError(f"{shown}: SQLAlchemy does not accept the scheme postgres://",
                               hint=f"write postgresql+psycopg:// instead, with the driver from {POSTGRES_EXTRA}")
        return ConfigError(f"{shown}: {parsed.drivername!r} is not a database SQLAlchemy knows",
                           hint=f"use a URL like {EXAMPLE_URLS}")
    if isinstance(exc, ImportError):
        missing = f"the driver module {exc.name!r}" if exc.name else f"its driver ({_one_line(str(exc))})"
        if backend == "postgresql":
            fix = (f"install it with {POSTGRES_EXTRA}" if parsed.get_driver_name() == "psycopg" else
                   f"use postgresql+psycopg://... with the driver the bridge supports: {POSTGRES_EXTRA}")
        else:
            fix = f"install that driver, or use {EXAMPLE_URLS} ({POSTGRES_EXTRA})"
        return ConfigError(f"{shown} needs {missing}, which is not installed", hint=fix)
    orig = getattr(exc, "orig", None)  # the driver's own exception, whose message says what happened
    detail = _one_line(str(orig if orig is not None else exc))
    if parsed.password:
        detail = detail.replace(parsed.password, "***")
    if backend == "sqlite":
        return ConfigError(f"{shown}: cannot open or create the SQLite database {parsed.database}: {detail}",
                           hint="point it at a file in an existing directory the bridge can write to, e.g. "
                                "sqlite:////var/lib/incident-bridge/incident-bridge.db")
    if isinstance(exc, sa.exc.OperationalError):
        return ConfigError(f"{shown}: cannot connect to the database: {detail}",
                           hint="check that the server runs and accepts connections at that host and port, and "
                                "the user, password and database name")
    return ConfigError(f"{shown}: cannot set up the bridge's tables: {detail}",
                       hint="check that this database user may create tables in that database")


class NoDatabase(ConfigError):
    """There is no bridge database where a read-only command was told to look: the SQLite file does not exist, or
    the database has no bridge tables. `str()` is the one line the command prints; nothing was created."""

    def __init__(self, where: str, setting: str = "BRIDGE_DATABASE_URL", *, detail: str = "") -> None:
        self.where = where
        self.setting = setting
        found = f"no incident-bridge database at {where} ({setting}): {detail}" if detail else \
            f"no database at {where} ({setting})"
        super().__init__(f"{found}; start the bridge first or point {setting} at its database")


def _one_line(text: str) -> str:
    # Drivers' messages span lines (libpq adds "Is the server running...?"); the first says what happened.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else text.strip()


class SchemaBehind(ConfigError):
    """The database's schema is older than this bridge's: `incident-bridge db upgrade` brings it to head. `str()`
    is the one line a command prints; nothing was changed."""

    def __init__(self, where: str, setting: str, state: SchemaStatus) -> None:
        self.state = state
        super().__init__(f"the database at {where} ({setting}) has schema revision {state.describe()}, older than "
                         f"this incident-bridge's {state.head}",
                         hint=f"run `incident-bridge db upgrade` with the same {setting}, then try again")


class SchemaAhead(ConfigError):
    """The database's schema was upgraded by a newer bridge (a revision this one does not know): this code must not
    write to it. `str()` is the one line a command prints."""

    def __init__(self, where: str, setting: str, state: SchemaStatus) -> None:
        self.state = state
        super().__init__(f"the database at {where} ({setting}) has schema revision {state.current}, newer than this "
                         f"incident-bridge knows (its newest is {state.head}): a newer version upgraded it",
                         hint=f"run that newer incident-bridge, or point {setting} at another database")
