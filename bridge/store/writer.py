"""One writer at a time on a SQLite database, queued on a lock file instead of in SQLite's busy handler, and never
waited for longer than the write's budget.

SQLite has one write lock per database. A writer that finds it taken retries on sleeps (1, 2, 5, 10, ... up to
100 ms), so under load a receipt waited tens or hundreds of milliseconds for a lock that was free most of that
time. Every write transaction of the bridge (receipts in the web workers, the pipeline stage, the delivery worker,
the CLI) first takes this lock: an `flock` on a file beside the database plus a thread lock for the threads of one
process (an `flock` is held per open file, not per thread). SQLite's own busy timeout stays as the backstop for
writers that do not take it (an operator's `sqlite3`, a backup).

Every acquisition has a deadline: a request must answer its sender (503, retry later) before the sender gives up,
so a writer that holds the lock for long (another process stuck mid-write) cannot pile up waiting requests. `flock`
itself cannot time out, so a contended acquisition polls `LOCK_NB` on short sleeps (1 ms, growing to 5 ms): the
uncontended path is one system call, and a freed lock is seen within 5 ms.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bridge.errors import DatabaseBusy

# The sleeps between two tries at a contended lock file: short first (most holders are done within a
# millisecond), then capped, so a lock freed after a long hold is taken within 5 ms.
POLL_SLEEPS = (0.001, 0.001, 0.002, 0.002, 0.003, 0.005)


class WriterLock:
    """Reentrant within a thread; the lock file is opened lazily in each process (never inherited over a fork)."""

    def __init__(self, database_path: str, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(f"{database_path}-writer.lock")
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0
        self._clock = clock
        self._sleep = sleep

    @contextmanager
    def held(self, deadline: float | None = None) -> Iterator[None]:
        """Hold the lock for the block. `deadline` (on `time.monotonic`'s clock): raise `DatabaseBusy` when the
        lock is not ours by then; None waits as long as it takes."""
        started = self._clock()
        budget = None if deadline is None else max(0.0, deadline - started)
        if not self._thread_lock.acquire(timeout=-1 if budget is None else budget):
            raise DatabaseBusy(budget or 0.0, detail="other threads of this process hold it")
        try:
            if self._depth == 0:
                self._take(self._file(), deadline, budget)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _take(self, fd: int, deadline: float | None, budget: float | None) -> None:
        if deadline is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        tries = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            left = deadline - self._clock()
            if left <= 0:
                raise DatabaseBusy(budget or 0.0, detail=f"another process holds {self.path.name}")
            self._sleep(min(POLL_SLEEPS[min(tries, len(POLL_SLEEPS) - 1)], left))
            tries += 1

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd


class NoWriterLock:
    """PostgreSQL, or SQLite in memory: nothing to queue on here."""

    @contextmanager
    def held(self, deadline: float | None = None) -> Iterator[None]:
        """Nothing (PostgreSQL bounds its own lock waits: `lock_timeout`)."""
        yield
