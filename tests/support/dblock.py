"""Hold a SQLite database of the bridge as another writer would: SQLite's write lock from a connection of our own
(`BEGIN IMMEDIATE`, like an operator's `sqlite3` or a backup) and the bridge's writer lock file (`flock` on
`<db>-writer.lock`, like another bridge process mid-write). Either can be held alone or released early.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from types import TracebackType


class DatabaseHolder:
    """Takes the locks on enter (each one chosen), releases what is still held on exit."""

    def __init__(self, database: Path | str, *, sqlite_lock: bool = True, writer_lock: bool = True) -> None:
        self.database = Path(database)
        self.want_sqlite = sqlite_lock
        self.want_writer = writer_lock
        self._conn: sqlite3.Connection | None = None
        self._fd: int | None = None
        self._releasing = threading.Lock()  # a timer may release while the test's block ends

    def __enter__(self) -> DatabaseHolder:
        if self.want_writer:
            self._fd = os.open(f"{self.database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        if self.want_sqlite:
            self._conn = sqlite3.connect(self.database, isolation_level=None, timeout=10, check_same_thread=False)
            self._conn.execute("BEGIN IMMEDIATE")
        return self

    def release_writer_lock(self) -> None:
        """Let go of the writer lock file (SQLite's lock stays, if held)."""
        with self._releasing:
            fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def release_sqlite_lock(self) -> None:
        """End the write transaction (the writer lock file stays, if held)."""
        with self._releasing:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.execute("ROLLBACK")
            conn.close()

    def release(self) -> None:
        """Let go of both."""
        self.release_sqlite_lock()
        self.release_writer_lock()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
