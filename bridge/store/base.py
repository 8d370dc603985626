"""`StoreBase`, what every part of the `Store` shares: the engine, opening a database and creating its schema,
and transactions (serialized across replicas on PostgreSQL). The parts (`bridge.store.journal`, `outbox`...)
derive from it; `bridge.store.Store` composes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import Connection, Engine

from bridge.store.engine import WRITE_OPTION, create_engine, database_error
from bridge.store.schema import ADDED_COLUMNS, WRITER_LOCK, alerts, incidents, jobs, metadata
from bridge.store.writer import NoWriterLock, WriterLock

log = logging.getLogger("bridge.store")

# How long a PostgreSQL transaction waits for a lock (SQLite: busy_timeout).
LOCK_TIMEOUT = "30s"


class StoreBase:
    """The engine and the transactions every part of the store works with (see `bridge.store.Store`).
    One instance per process; thread-safe through the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._local = threading.local()
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._writer: WriterLock | NoWriterLock = (
            WriterLock(database) if database and database != ":memory:" else NoWriterLock())
        job_insert: Any = (sa.dialects.postgresql.insert if self.is_postgres else sa.dialects.sqlite.insert)(jobs)
        self._job_insert_once = job_insert.on_conflict_do_nothing(index_elements=["dedupe"]).returning(jobs.c.id)

    @classmethod
    def open(cls, url: str, *, setting: str = "BRIDGE_DATABASE_URL") -> Self:
        """Open (and create the schema of) the database at `url`.

        Raises ConfigError naming `setting` (where the URL came from) when the URL is malformed, its driver is
        not installed, or the database cannot be reached or created: nothing can start without it, and the
        cause is the setting, so the user gets one line saying how to fix it rather than a driver's traceback.
        """
        try:
            store = cls(create_engine(url))
            store.create_schema()
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            # ValueError: SQLAlchemy's URL parser raises it for a port that is not a number.
            raise database_error(url, exc, setting) from exc
        return store

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Add the columns of `ADDED_COLUMNS` to a database created before them (create_all adds tables only)."""
        # Serialized: two processes starting at once (web and worker, or replicas) must not both add a column.
        with self.transaction(serialized=True) as conn:
            for (table, column), ddl in ADDED_COLUMNS.items():
                if column not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
                    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
                    log.warning("database upgraded: added column %s.%s", table, column)
            # create_all makes the indexes of the tables it creates; these came later, on tables that may exist.
            for added in (alerts, jobs, incidents):
                for index in added.indexes:
                    index.create(conn, checkfirst=True)

    @contextmanager
    def transaction(self, *, serialized: bool = False) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on any error.

        `serialized`: on PostgreSQL, wait for the other serialized transactions of every replica first (see
        `WRITER_LOCK`); on SQLite every write transaction already is.
        """
        with self._writer.held(), self.engine.connect() as conn, \
                conn.execution_options(**{WRITE_OPTION: True}).begin():
            if self.is_postgres:
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                if serialized:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITER_LOCK)))
            yield conn

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _thread_connection(self) -> Any:
        """This thread's own SQLite driver connection (with the engine's pragmas), kept for the thread's life."""
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self._local.raw = self.engine.raw_connection()  # never returned to the pool
        return raw.driver_connection
