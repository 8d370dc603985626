"""PagerDuty's Events API down while alerts arrive (RELIABILITY.md, "PagerDuty down"): 500s, 503s, 429s with and
without rate-limit headers, timeouts, connection resets, slow answers and answers that come after the bridge gave
up. Every alert answered 202 is decided and paged once PagerDuty is back, no dedup key opens two incidents, and
the webhooks keep answering 202 throughout. The short CI version; benchmarks/reliability_pagerduty_outage.py runs
the same scenario with 1,000 alerts over minutes and prints the latency and drain figures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.faults import OUTAGE_KINDS, run_outage

pytestmark = pytest.mark.integration


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def test_an_outage_loses_no_alert_and_duplicates_no_incident(tmp_path: Path, pd: FakePagerDuty) -> None:
    figures = run_outage(tmp_path, pd, alerts=150, rate=25, baseline=20, drain_timeout=120)
    print("\n".join(figures.lines()))
    result = figures.audit
    assert figures.not_accepted == 0, "a webhook was refused or timed out while PagerDuty was down"
    assert result.accepted == 170
    assert result.ok, result.summary()
    assert result.incidents == 170
    # Every kind of fault was met (so none of them went untested) and the run drained.
    met = sum(figures.faults.values())
    assert met >= len(OUTAGE_KINDS), figures.faults
    assert figures.drain_seconds != float("inf")
