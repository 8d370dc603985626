"""SIGKILL at random moments of a storm: `serve`, gunicorn's master, a web worker, the worker process.

Usage (from the repository root):
    python benchmarks/reliability_sigkill.py                        # 10 kills, 2,000 alerts at 20/s, new seed
    python benchmarks/reliability_sigkill.py --seed 856670 --rounds 30 --alerts 5000

The scenario of tests/integration/test_fault_sigkill.py (`tests.support.faults.run_kills`) with bigger numbers:
`python -m bridge serve` on SQLite against the PagerDuty fake in this process; 4 Datadog senders post `--alerts`
alerts at `--rate` per second and re-post any that got no 2xx; `--rounds` SIGKILLs, each after a random gap,
hit a role chosen at random (seeded: the seed is printed); a dead `serve` is restarted on the same port and
database. Printed: each kill and how long until the bridge answered again, the POSTs refused, the drain, and what
became of every alert answered 2xx (lost, undecided, duplicate incidents, re-sent triggers). Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import machine  # noqa: E402
from bench.testsupport import FakePagerDuty, faults  # noqa: E402


def main() -> int:
    """Run the kills and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--max-gap", type=float, default=5.0, help="longest pause between kills, in seconds")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    print(f"machine: {machine()}\nseed: {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="reliability-kill-") as tmp, FakePagerDuty(tls=False) as pd:
        figures = faults.run_kills(Path(tmp), pd, rounds=args.rounds, seed=seed, rate=args.rate,
                                   alerts=args.alerts, gap=(0.3, args.max_gap), drain_timeout=600,
                                   log=lambda line: print(line, flush=True))
        for line in figures.lines():
            print(line, flush=True)
        print(f"requests PagerDuty's schema refused: {len(pd.invalid_requests)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
