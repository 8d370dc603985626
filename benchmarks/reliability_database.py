"""A SQLite database whose disk fills up while alerts arrive: answers while full, recovery once space is freed.

Usage (from the repository root, as root: it mounts a tmpfs):
    python benchmarks/reliability_database.py                 # 8 MiB tmpfs, 200 alerts while full, 200 after
    python benchmarks/reliability_database.py --alerts 1000 --size 32m

The scenario of tests/integration/test_fault_database.py::test_out_of_disk (`tests.support.faults.database_fault`)
with bigger numbers: `python -m bridge serve` on a SQLite file in a small tmpfs, against the PagerDuty fake in this
process; the disk is filled (a file written until ENOSPC), `--alerts` alerts are posted (2 senders, no retry), the
file is deleted, `--alerts` more are posted (retried until accepted). Printed: the answers while full and after,
how soon the first 2xx came after the space was freed, whether the worker process ran throughout, and what became
of every alert answered 2xx. The PostgreSQL faults (stopped, restarted, read-only) are in the test file only.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import machine  # noqa: E402
from bench.testsupport import BridgeProcess, FakePagerDuty, faults  # noqa: E402


def main() -> int:
    """Fill the disk, measure, free it, measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--size", default="8m", help="the tmpfs's size (mount -o size=)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="reliability-db-") as tmp, FakePagerDuty(tls=False) as pd:
        disk = faults.Tmpfs(Path(tmp) / "disk", size=args.size)
        reason = disk.mount()
        if reason:
            print(f"cannot run: {reason} (run as root)")
            return 1
        try:
            url = f"sqlite:///{disk.path / 'bridge.db'}"
            bridge = BridgeProcess(Path(tmp), faults.bridge_for(Path(tmp), pd, BRIDGE_DATABASE_URL=url)).start()
            filler: list[Path] = []
            try:
                figures = faults.database_fault(bridge, pd, url, "out of disk",
                                                break_it=lambda: filler.append(disk.fill()),
                                                repair=lambda: filler[0].unlink(), alerts=args.alerts,
                                                drain_timeout=600)
            finally:
                bridge.kill()
            for line in figures.lines():
                print(line, flush=True)
            print(f"answers breaking the 2xx-or-503 rule: {figures.problems[:5]}")
        finally:
            disk.unmount()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
