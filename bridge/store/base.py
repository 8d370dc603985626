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

from bridge.errors import ConfigError, DatabaseBusy
from bridge.store.engine import (
    BACKGROUND_LOCK_TIMEOUT,
    WRITE_OPTION,
    NoDatabase,
    busy_milliseconds,
    create_engine,
    database_error,
    is_lock_timeout,
    redact_url,
)
from bridge.store.schema import ADDED_COLUMNS, WRITER_LOCK, alerts, incidents, jobs, metadata
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
             lock_timeout: float = BACKGROUND_LOCK_TIMEOUT) -> Self:
        """Open (and create the schema of) the database at `url`; its writes wait at most `lock_timeout` seconds
        for the write lock (then raise DatabaseBusy).

        Raises ConfigError naming `setting` (where the URL came from) when the URL is malformed, its driver is
        not installed, or the database cannot be reached or created: nothing can start without it, and the
        cause is the setting, so the user gets one line saying how to fix it rather than a driver's traceback.
        """
        try:
            store = cls(create_engine(url, busy_timeout=lock_timeout), lock_timeout=lock_timeout)
            store.create_schema()
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            # ValueError: SQLAlchemy's URL parser raises it for a port that is not a number.
            raise database_error(url, exc, setting) from exc
        return store

    @classmethod
    def open_existing(cls, url: str, *, setting: str = "BRIDGE_DATABASE_URL",
                      lock_timeout: float = BACKGROUND_LOCK_TIMEOUT) -> Self:
        """Open the bridge's database at `url` for reading, creating nothing: no file, no table, no column.

        For the read-only commands (`incidents`, `alerts`, `silence list`, `rules diff --replay`...): `open` would
        create a database where none is, and the command would then report an empty history instead of the wrong
        URL. Raises `NoDatabase` (a ConfigError naming `setting`) when the SQLite file does not exist or the
        database has no bridge tables, and ConfigError when the database was made by an older bridge (its new
        columns are added by the bridge's start, a write) or cannot be reached.
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
            with store.engine.connect() as conn:
                if not sa.inspect(conn).has_table(alerts.name):
                    raise NoDatabase(where, setting, detail="it has no incident-bridge tables")
                older = [change for change in store._schema_changes(conn) if not isinstance(change, sa.Index)]
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise database_error(url, exc, setting) from exc
        if older:
            columns = ", ".join(f"{table}.{column}" for table, column in older)
            raise ConfigError(f"the database at {where} ({setting}) was made by an older incident-bridge (it lacks "
                              f"{columns})", hint="start the bridge once on it (`incident-bridge serve`), which "
                                                  "upgrades it, then run this command again")
        return store

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Add the columns of `ADDED_COLUMNS` (and the indexes added later) to a database created before them
        (create_all adds tables only)."""
        # Looked for without the write lock first: every process opens the store at start (each web worker too),
        # and one starting while another writer holds the database for long must not need it when there is
        # nothing to add.
        with self.engine.connect() as conn:
            if not self._schema_changes(conn):
                return
        # Serialized: two processes starting at once (web and worker, or replicas) must not both add a column.
        with self.transaction(serialized=True) as conn:
            for change in self._schema_changes(conn):
                if isinstance(change, sa.Index):
                    change.create(conn, checkfirst=True)
                    continue
                table, column = change
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ADDED_COLUMNS[change]}"))
                log.warning("database upgraded: added column %s.%s", table, column)

    @staticmethod
    def _schema_changes(conn: Connection) -> list[tuple[str, str] | sa.Index]:
        """The columns and indexes missing from the database (columns first: an index may need one)."""
        inspector = sa.inspect(conn)
        columns: dict[str, set[str]] = {}
        missing: list[tuple[str, str] | sa.Index] = []
        for (table, column) in ADDED_COLUMNS:
            if table not in columns:
                columns[table] = {c["name"] for c in inspector.get_columns(table)}
            if column not in columns[table]:
                missing.append((table, column))
        # create_all makes the indexes of the tables it creates; these came later, on tables that may exist.
        for added in (alerts, jobs, incidents):
            present = {i["name"] for i in inspector.get_indexes(added.name)}
            missing.extend(index for index in added.indexes if index.name not in present)
        return missing

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
