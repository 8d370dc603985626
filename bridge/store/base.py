"""`StoreBase`, what every part of the `Store` shares: the engine, opening a database and creating its schema,
and transactions (serialized across replicas on PostgreSQL). The parts (`bridge.store.journal`, `outbox`...)
derive from it; `bridge.store.Store` composes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import Connection, Engine

from bridge.errors import DatabaseBusy
from bridge.store import migrations
from bridge.store.engine import (
    BACKGROUND_LOCK_TIMEOUT,
    WRITE_OPTION,
    NoDatabase,
    SchemaAhead,
    SchemaBehind,
    busy_milliseconds,
    create_engine,
    database_error,
    is_lock_timeout,
    redact_url,
)
from bridge.store.schema import WRITER_LOCK, jobs
from bridge.store.writer import NoWriterLock, WriterLock

log = logging.getLogger("bridge.store")


class StoreBase:
    """The engine and the transactions every part of the store works with (see `bridge.store.Store`).
    One instance per process; thread-safe through the engine's pool."""

    def __init__(self, engine: Engine, *, lock_timeout: float = BACKGROUND_LOCK_TIMEOUT) -> None:
        self.engine = engine
        # Seconds a write may wait for the database's write lock (see `transaction`). The web app gives its store
        # the request budget (BRIDGE_DB_LOCK_TIMEOUT); tools and tests wait as long as the worker does.
        self.lock_timeout = lock_timeout
        self.is_postgres = engine.dialect.name == "postgresql"
        self._local = threading.local()
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._writer: WriterLock | NoWriterLock = (
            WriterLock(database) if database and database != ":memory:" else NoWriterLock())
        job_insert: Any = (sa.dialects.postgresql.insert if self.is_postgres else sa.dialects.sqlite.insert)(jobs)
        self._job_insert_once = job_insert.on_conflict_do_nothing(index_elements=["dedupe"]).returning(jobs.c.id)

    @classmethod
    def open(cls, url: str, *, setting: str = "BRIDGE_DATABASE_URL",
             lock_timeout: float = BACKGROUND_LOCK_TIMEOUT, upgrade: bool = False) -> Self:
        """Open the database at `url`, creating its schema (at the migrations' head) when it has none; its writes
        wait at most `lock_timeout` seconds for the write lock (then raise DatabaseBusy).

        A schema behind this bridge's is upgraded when `upgrade` is set (the embedded SQLite default at start,
        `incident-bridge db upgrade`); otherwise `SchemaBehind` says to run `db upgrade`. A schema ahead of it (a
        newer bridge's) raises `SchemaAhead`: this code may not write it.

        Raises ConfigError naming `setting` (where the URL came from) when the URL is malformed, its driver is
        not installed, or the database cannot be reached or created: nothing can start without it, and the
        cause is the setting, so the user gets one line saying how to fix it rather than a driver's traceback.
        """
        store = cls.connect(url, setting=setting, lock_timeout=lock_timeout)
        try:
            state = store.schema_status()
            if state.ahead:
                raise SchemaAhead(store.where(url), setting, state)
            if state.behind and not upgrade:
                raise SchemaBehind(store.where(url), setting, state)
            if not state.at_head:
                store.upgrade_schema()
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise database_error(url, exc, setting) from exc
        return store

    @classmethod
    def connect(cls, url: str, *, setting: str = "BRIDGE_DATABASE_URL",
                lock_timeout: float = BACKGROUND_LOCK_TIMEOUT) -> Self:
        """A store on `url` that has not looked at the schema yet (`db current`, `db upgrade`); ConfigError naming
        `setting` when the URL is malformed or its driver missing. Connects lazily: nothing is created here."""
        try:
            return cls(create_engine(url, busy_timeout=lock_timeout), lock_timeout=lock_timeout)
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            # ValueError: SQLAlchemy's URL parser raises it for a port that is not a number.
            raise database_error(url, exc, setting) from exc

    @staticmethod
    def where(url: str) -> str:
        """The database as messages name it: the SQLite file, or the URL without its password."""
        parsed = sa.make_url(url)
        return (parsed.database or url) if parsed.get_backend_name() == "sqlite" else redact_url(url)

    @classmethod
    def open_existing(cls, url: str, *, setting: str = "BRIDGE_DATABASE_URL",
                      lock_timeout: float = BACKGROUND_LOCK_TIMEOUT) -> Self:
        """Open the bridge's database at `url` for reading, creating nothing: no file, no table, no column.

        For the read-only commands (`incidents`, `alerts`, `silence list`, `rules diff --replay`...): `open` would
        create a database where none is, and the command would then report an empty history instead of the wrong
        URL. Raises `NoDatabase` (a ConfigError naming `setting`) when the SQLite file does not exist or the
        database has no bridge tables, `SchemaBehind` when its schema is older than this bridge's (`db upgrade`
        brings it up), `SchemaAhead` when newer, and ConfigError when it cannot be reached.
        """
        try:
            parsed = sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise database_error(url, exc, setting) from exc
        where = redact_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = parsed.database or ""
            # An in-memory database is a new, empty one on every connection: nothing to read.
            if path in ("", ":memory:") or not Path(path).is_file():
                raise NoDatabase(path or url, setting)
            where = path
        try:
            store = cls(create_engine(url, busy_timeout=lock_timeout), lock_timeout=lock_timeout)
            state = store.schema_status()
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise database_error(url, exc, setting) from exc
        if state.empty:
            raise NoDatabase(where, setting, detail="it has no incident-bridge tables")
        if state.ahead:
            raise SchemaAhead(where, setting, state)
        if state.behind:
            raise SchemaBehind(where, setting, state)
        return store

    def schema_status(self) -> migrations.SchemaStatus:
        """Where the database's schema stands against this bridge's migrations (reads only)."""
        with self.engine.connect() as conn:
            return migrations.status(conn)

    def upgrade_schema(self) -> tuple[migrations.SchemaStatus, migrations.SchemaStatus]:
        """Bring the schema to head (create it on an empty database); returns the status before and after.

        Idempotent, and serialized: two processes starting at once (web and worker, or replicas) run it one after
        the other, the second finding nothing to do. Looked at without the write lock first, so a process opening
        an up-to-date database never waits for a writer holding the database for long.
        """
        state = self.schema_status()
        if state.at_head:
            return state, state
        if state.ahead:
            raise SchemaAhead(self.where(str(self.engine.url)), "BRIDGE_DATABASE_URL", state)
        with self.transaction(serialized=True) as conn:
            return migrations.upgrade(conn)

    def create_schema(self) -> None:
        """Create the schema at head on an empty database, or bring an older one to head (idempotent)."""
        self.upgrade_schema()

    @contextmanager
    def transaction(self, *, serialized: bool = False) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on any error.

        `serialized`: on PostgreSQL, wait for the other serialized transactions of every replica first (see
        `WRITER_LOCK`); on SQLite every write transaction already is.

        Raises `DatabaseBusy` when the write lock cannot be had within `lock_timeout` seconds: on SQLite the writer
        lock and SQLite's own busy wait share that budget; on PostgreSQL it is the transaction's `lock_timeout`
        (which bounds each lock wait: a receipt has one, the journal's shared lock). Nothing is written then.
        """
        deadline = time.monotonic() + self.lock_timeout
        try:
            with self._writer.held(deadline), self.engine.connect() as conn, \
                    conn.execution_options(**{WRITE_OPTION: deadline}).begin():
                if self.is_postgres:
                    left = busy_milliseconds(deadline - time.monotonic())
                    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{left}ms'"))
                    if serialized:
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITER_LOCK)))
                yield conn
        except sa.exc.OperationalError as exc:
            if is_lock_timeout(exc):
                raise DatabaseBusy(self.lock_timeout, detail=self._busy_detail()) from exc
            raise

    @contextmanager
    def waiting_longer(self, seconds: float) -> Iterator[None]:
        """Let the writes of the block wait up to `seconds` for the write lock: start-up, which answers no sender
        and must not fail on a lock that frees in a while. Not for blocks that run while other threads write."""
        before = self.lock_timeout
        self.lock_timeout = max(before, seconds)
        try:
            yield
        finally:
            self.lock_timeout = before

    def _busy_detail(self) -> str:
        return "another transaction holds a lock it needs" if self.is_postgres else "SQLite's write lock is held"

    def write_problem(self, timeout: float) -> str | None:
        """Why a write could not be made right now (None when it could), found within about `timeout` seconds and
        without writing anything: for readiness probes, which run every few seconds.

        SQLite: take the writer lock and SQLite's write lock (BEGIN IMMEDIATE), then roll back. PostgreSQL: the
        server takes writes (not a standby in recovery, not read-only).
        """
        if self.is_postgres:
            with self.engine.connect() as conn, conn.begin():
                conn.execute(sa.text(f"SET LOCAL statement_timeout = '{busy_milliseconds(timeout)}ms'"))
                recovering, read_only = conn.execute(sa.text(
                    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")).one()
            if recovering:
                return "read-only: the server is a standby in recovery"
            if read_only == "on":
                return "read-only: the server refuses writes (default_transaction_read_only)"
            return None
        deadline = time.monotonic() + timeout
        try:
            with self._writer.held(deadline), self.engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: deadline}).begin().rollback()
        except DatabaseBusy:
            return f"cannot take the write lock within {timeout:g} s"
        except sa.exc.OperationalError as exc:
            if is_lock_timeout(exc):
                return f"cannot take the write lock within {timeout:g} s"
            raise
        return None

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _thread_connection(self) -> Any:
        """This thread's own SQLite driver connection (with the engine's pragmas), kept for the thread's life."""
        return self._thread_pooled().driver_connection

    def _thread_connection_info(self) -> dict[str, Any]:
        """The `info` of this thread's own connection (where its busy timeout is remembered)."""
        info: dict[str, Any] = self._thread_pooled().info
        return info

    def _thread_pooled(self) -> Any:
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self._local.raw = self.engine.raw_connection()  # never returned to the pool
        return raw
