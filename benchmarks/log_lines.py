"""What a log line costs, text and JSON (issue 14: `BRIDGE_LOG_FORMAT=json`).

    python benchmarks/log_lines.py                # 50,000 lines of each kind
    python benchmarks/log_lines.py --lines 200000

Each alert now writes one receipt line (web) and one pipeline line (worker), and each page one delivery line, so
a 10,000-alert storm writes about 20,000 lines more than before. This formats and writes, into a null stream
through a real `logging.StreamHandler`, the receipt line exactly as `bridge.web.webhooks.log_receipts` logs it
(with the request id bound by `log_fields`, as in a request), in both formats, and prints microseconds per line
and lines per second. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.logformat import formatter_for, log_fields  # noqa: E402


class NullStream(io.TextIOBase):
    """Takes the lines and drops them: the cost measured is formatting and the handler, not the disk."""

    def write(self, text: str) -> int:
        return len(text)


def per_line(layout: str, lines: int) -> float:
    """Seconds per receipt line in `layout` ("text" or "json")."""
    logger = logging.getLogger(f"bench.{layout}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(NullStream())
    handler.setFormatter(formatter_for(layout))
    logger.handlers = [handler]
    key = "datadog:183664512:env:prod,service:checkout"
    with log_fields(request_id="4bf92f3577b34da6a3ce929d0e0e4736"):
        started = time.perf_counter()
        for i in range(lines):
            logger.info("%s alert %d %s: %s %s (dedup key %s)", "datadog", i, "journaled", "page", "P1", key,
                        extra={"alert_id": i, "dedup_key": key, "source": "datadog", "action": "page",
                               "outcome": "pending"})
        return (time.perf_counter() - started) / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()
    print(f"{'format':<6} {'us/line':>8} {'lines/s':>10}  (receipt line, {args.lines} lines, null stream)")
    for layout in ("text", "json"):
        per_line(layout, 1000)  # warm-up
        seconds = min(per_line(layout, args.lines) for _ in range(3))
        print(f"{layout:<6} {seconds * 1e6:>8.1f} {1 / seconds:>10,.0f}")


if __name__ == "__main__":
    main()
