"""PagerDuty's Events API down for minutes while 1,000 alerts arrive: lost, duplicated, latency, drain.

Usage (from the repository root):
    python benchmarks/reliability_pagerduty_outage.py                       # 1,000 alerts at 5/s: 200 s down
    python benchmarks/reliability_pagerduty_outage.py --alerts 300 --rate 25 --test-retries

The scenario of tests/integration/test_fault_pagerduty_outage.py (`tests.support.faults.run_outage`) with bigger
numbers: `python -m bridge serve` with its defaults on SQLite (retries: the bridge's own backoff, 2 s doubling up
to 300 s, full jitter; HTTP timeout 10 s) against the PagerDuty fake in this process. First `--baseline` alerts
with PagerDuty up, then the outage: the Events API answers 500, 429 (bare, with Retry-After, with ratelimit-reset),
503, holds requests past the timeout, resets connections, answers slowly, and ingests some after the bridge gave
up (round robin), while `--alerts` alerts arrive at `--rate` per second. Then PagerDuty recovers. Printed: the
webhook latency without and during the outage (p50, p99 and their ratio), the faults met, the drain time after
recovery (every incident paged, no event job waiting), and what became of every alert answered 2xx.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import machine  # noqa: E402
from bench.testsupport import FakePagerDuty, faults  # noqa: E402


def main() -> int:
    """Run the outage and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1000, help="alerts posted during the outage")
    parser.add_argument("--rate", type=float, default=5.0, help="alerts per second (the outage lasts alerts/rate)")
    parser.add_argument("--baseline", type=int, default=200, help="alerts posted before, with PagerDuty up")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the drain")
    parser.add_argument("--test-retries", action="store_true",
                        help="the tests' fast retries (0.05 s doubling to 0.5 s, timeout 2 s), not the defaults")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="reliability-outage-") as tmp, FakePagerDuty(tls=False) as pd:
        env = faults.bridge_for(Path(tmp), pd)
        if not args.test_retries:
            for name in ("BRIDGE_RETRY_MULTIPLIER", "BRIDGE_RETRY_MAX", "BRIDGE_HTTP_TIMEOUT"):
                env.pop(name, None)
        figures = faults.run_outage(Path(tmp), pd, alerts=args.alerts, rate=args.rate, baseline=args.baseline,
                                    drain_timeout=args.drain_timeout, env=env)
        for line in figures.lines():
            print(line, flush=True)
        invalid = len(pd.invalid_requests)
        print(f"requests PagerDuty's schema refused: {invalid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
