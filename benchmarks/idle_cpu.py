"""What an idle `incident-bridge worker` costs: CPU and wake-ups with nothing to do.

    python benchmarks/idle_cpu.py                  # SQLite; 30 s, after 5 s to settle
    python benchmarks/idle_cpu.py --seconds 60
    python benchmarks/idle_cpu.py --postgres       # a fresh database on a throwaway PostgreSQL (scripts/postgres)

What it does: starts `python -m bridge worker` (the pipeline stage and the two delivery lanes; dry-run, no REST
API, so nothing is queued at start) on a new database, waits `--settle` seconds, then reads the process's CPU time
(utime + stime of every thread, /proc/<pid>/stat) and its threads' voluntary context switches (one per wake-up of
a sleeping thread) at the start and the end of `--seconds`.

Prints the share of one core, the CPU seconds and the wake-ups per second. On PostgreSQL every query also counts
as a wake-up (the thread sleeps until the server answers). On the 2-core machine (busy with other runs), before
the idle lanes slept until woken (issue 18) and after:

    SQLite      0.63 % of a core, 19.2 wake-ups/s  ->  0.07 %, 0.6 wake-ups/s
    PostgreSQL  1.00 % of a core, 70.1 wake-ups/s  ->  0.17 %, 7.0 wake-ups/s

Figures are printed, never asserted; tests/integration/test_idle_worker.py bounds the wake-ups on SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench.common import log  # noqa: E402
from bench.testsupport import WorkerProcess, bridge_env, sample  # noqa: E402


@contextlib.contextmanager
def database(tmp: Path, postgres: bool) -> Iterator[str]:
    """A new SQLite database in `tmp`, or a fresh database on a throwaway PostgreSQL server."""
    if not postgres:
        yield f"sqlite:///{tmp / 'idle.db'}"
        return
    from bench.postgres import PostgresServer, fresh_database

    server = PostgresServer()
    try:
        with fresh_database(server.start()) as url:
            yield url
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to measure (default 30)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the start before measuring")
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(Path(tmp), args.postgres) as url:
        worker = WorkerProcess(Path(tmp), bridge_env(Path(tmp), BRIDGE_DATABASE_URL=url)).start()
        try:
            log(f"worker {worker.pid} started on {'PostgreSQL' if args.postgres else 'SQLite'}; "
                f"settling for {args.settle:.0f} s")
            time.sleep(args.settle)
            before = sample(worker.pid)
            time.sleep(args.seconds)
            seconds, cpu, wakeups = sample(worker.pid).since(before)
        finally:
            worker.stop()
    print(f"idle worker ({'PostgreSQL' if args.postgres else 'SQLite'}): {100 * cpu / seconds:.2f} % of a core "
          f"({cpu:.2f} s of CPU in {seconds:.1f} s), {wakeups / seconds:.1f} wake-ups/s ({wakeups})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
