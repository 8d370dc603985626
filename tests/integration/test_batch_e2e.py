"""A huge batch never blocks other senders (issue 13, item 5), through the real `incident-bridge serve` on SQLite
and on PostgreSQL.

- A 10,000-alert Alertmanager webhook (959 KB, each alert its own labels and fingerprint) is accepted within 5 s;
  Datadog alerts posted while it is in flight (the first 200 ms after it, then every 100 ms) are each answered
  within 1 s; afterwards every one of them is in the journal. (The batch is journaled in chunks, the writer free
  between them: `JOURNAL_CHUNK`.)
- One alert over BRIDGE_MAX_ALERTS_PER_REQUEST (default 10,000) is 413 `too_many_alerts`, and nothing is
  journaled.

The bounds are the issue's. The timing varies with the machine's load: `benchmarks/resilience_batch.py` prints
the figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.config import DEFAULT_MAX_ALERTS
from bridge.store import Store, alerts
from tests.support.bodies import alertmanager_batch
from tests.support.e2e import datadog_payload
from tests.support.postgres import fresh_database
from tests.support.server import BridgeProcess, bridge_env

pytestmark = pytest.mark.integration

BIG = 10_000
BIG_WITHIN = 5.0  # seconds, the bound for the whole batch
OTHER_WITHIN = 1.0  # seconds, for a one-alert sender meanwhile
OTHER_AFTER = 0.2  # the first Datadog alert is sent this long after the batch (the issue: 100 to 300 ms)
OTHER_EVERY = 0.1  # and the next ones this often, while the batch is in flight


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def bridge(tmp_path: Path, database_url: str) -> Iterator[BridgeProcess]:
    process = BridgeProcess(tmp_path, bridge_env(tmp_path, BRIDGE_DATABASE_URL=database_url,
                                                 BRIDGE_LOG_LEVEL="WARNING")).start()
    try:
        yield process
        assert "Traceback" not in process.output(), process.output()
    finally:
        process.kill()


def journaled(database_url: str, source: str) -> int:
    """Alerts of `source` in the journal, read from the database itself."""
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(alerts)
                                    .where(alerts.c.source == source)).scalar_one())
    finally:
        store.engine.dispose()


def test_a_huge_batch_is_accepted_in_time_and_other_senders_are_answered_meanwhile(
        bridge: BridgeProcess, database_url: str) -> None:
    body = alertmanager_batch(BIG, "big")
    assert len(body) < 1024 * 1024  # within the default body limit, as the reported 879 KB body was
    big: dict[str, float | int] = {}
    others: list[tuple[float, float, int]] = []  # (sent at, seconds, status) of each Datadog alert

    def send_big() -> None:
        started = time.monotonic()
        answer = bridge.post("/webhooks/alertmanager", body)
        big.update(seconds=time.monotonic() - started, status=answer.status_code,
                   alerts=len(answer.json().get("alerts", [])))

    def send_other(i: int) -> None:
        sent = time.monotonic()
        answer = bridge.post("/webhooks/datadog", json.dumps(datadog_payload(f"meanwhile-{i}")))
        others.append((sent, time.monotonic() - sent, answer.status_code))

    # One Datadog alert 200 ms after the batch, then one every 100 ms while it is in flight, each on its own
    # thread: a sender that came later in the batch (behind more of it) is measured too.
    batch = threading.Thread(target=send_big)
    batch.start()
    threads: list[threading.Thread] = []
    time.sleep(OTHER_AFTER)
    while batch.is_alive() or not threads:
        threads.append(threading.Thread(target=send_other, args=(len(threads),)))
        threads[-1].start()
        time.sleep(OTHER_EVERY)
    for thread in [batch, *threads]:
        thread.join(timeout=120)

    assert (big["status"], big["alerts"]) == (202, BIG)
    assert big["seconds"] > OTHER_AFTER, "the batch was answered before the others started: nothing was tested"
    assert big["seconds"] < BIG_WITHIN, f"the batch took {big['seconds']:.2f} s"
    assert [status for _, _, status in others] == [202] * len(others)
    slowest = max(seconds for _, seconds, _ in others)
    assert slowest < OTHER_WITHIN, f"a sender waited {slowest:.2f} s while the batch was in flight"
    assert (journaled(database_url, "alertmanager"), journaled(database_url, "datadog")) == (BIG, len(others))


def test_one_alert_over_the_limit_is_413_and_nothing_is_journaled(bridge: BridgeProcess, database_url: str) -> None:
    answer = bridge.post("/webhooks/alertmanager", alertmanager_batch(DEFAULT_MAX_ALERTS + 1, "over"))
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_many_alerts"
    assert (f"at most {DEFAULT_MAX_ALERTS:,} are accepted per request (BRIDGE_MAX_ALERTS_PER_REQUEST)"
            in answer.json()["message"])
    assert journaled(database_url, "alertmanager") == 0
