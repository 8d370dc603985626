"""`unavailable_problem`: which database errors mean "the database cannot take a write now" (503, the sender
retries) and which are ours (500 with a traceback). Real driver exceptions, raised by SQLite itself where it can."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.store.engine import unavailable_problem


class _PgError(Exception):
    """A driver error carrying a SQLSTATE, as psycopg's errors do (`sqlstate`)."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


def _sqlite_error(code: int, message: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(("exc", "expected"), [
    (_sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), "is full (no space left on its disk)"),
    (_sqlite_error(sqlite3.SQLITE_READONLY, "attempt to write a readonly database"), "is read-only"),
    (_sqlite_error(sqlite3.SQLITE_IOERR_WRITE, "disk I/O error"), "cannot be written (an I/O error on its disk)"),
    (sqlite3.OperationalError("database or disk is full"), "is full (no space left on its disk)"),
    (sa.exc.OperationalError("INSERT", {}, _sqlite_error(sqlite3.SQLITE_READONLY, "readonly")), "is read-only"),
    (sa.exc.InternalError("INSERT", {}, _PgError("25006")), "is read-only"),
    (sa.exc.OperationalError("connect", {}, _PgError("08006")), "is unreachable"),
    (sa.exc.OperationalError("INSERT", {}, _PgError("57P01")), "is shutting down or restarting"),
    (sa.exc.OperationalError("INSERT", {}, _PgError("53100")), "is out of resources (disk full?)"),
    (sa.exc.OperationalError("connect", {}, Exception("connection refused")), "is unreachable"),
    (OSError(errno.ENOSPC, "No space left on device"), "is full (no space left on its disk)"),
    (OSError(errno.EROFS, "Read-only file system"), "is read-only"),
    # Ours, or a lock timeout (DatabaseBusy's business): not "unavailable".
    (_sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"), None),
    (sa.exc.IntegrityError("INSERT", {}, _PgError("23505")), None),
    (sa.exc.ProgrammingError("SELECT", {}, _sqlite_error(sqlite3.SQLITE_ERROR, "no such table: x")), None),
    (KeyError("severity"), None),
    (OSError(errno.ENOENT, "No such file"), None),
])
def test_unavailable_problem(exc: BaseException, expected: str | None) -> None:
    assert unavailable_problem(exc) == expected


def test_a_read_only_sqlite_file_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("INSERT INTO t VALUES (1)")
    assert unavailable_problem(raised.value) == "is read-only"
