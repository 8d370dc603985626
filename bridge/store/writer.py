"""One writer at a time on a SQLite database, queued in the kernel instead of in SQLite's busy handler.

SQLite has one write lock per database. A writer that finds it taken retries on sleeps (1, 2, 5, 10, ... up to
100 ms), so under load a receipt waited tens or hundreds of milliseconds for a lock that was free most of that
time. Every write transaction of the bridge (receipts in the web workers, the pipeline stage, the delivery worker,
the CLI) first takes this lock: an `flock` on a file beside the database, which wakes the next waiter the moment
it is released, plus a thread lock for the threads of one process (an `flock` is held per open file, not per
thread). SQLite's own busy timeout stays as the backstop for writers that do not take it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriterLock:
    """Reentrant within a thread; the lock file is opened lazily in each process (never inherited over a fork)."""

    def __init__(self, database_path: str) -> None:
        self.path = Path(f"{database_path}-writer.lock")
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block."""
        with self._thread_lock:
            if self._depth == 0:
                fd = self._file()
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd


class NoWriterLock:
    """PostgreSQL, or SQLite in memory: nothing to queue on here."""

    @contextmanager
    def held(self) -> Iterator[None]:
        """Nothing."""
        yield
