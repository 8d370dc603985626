"""Big batches through the real app (Flask test client, a real SQLite file): the per-request alert limit refuses a
batch before anything is journaled; a batch whose journaling fails part-way answers 5xx saying how many alerts
were stored, which a retry of the same body then finds as duplicates; the pipeline stage's doorbell rings after
each chunk. The timing of a 10,000-alert batch against a real bridge is in tests/integration/test_batch_e2e.py."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.config import Settings
from bridge.pipeline.wake import SocketListener, doorbell_address
from bridge.store import JOURNAL_CHUNK, Store, alerts
from bridge.store.schema import notices
from bridge.web import create_app
from tests.support.bodies import alertmanager_batch

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def client_of(tmp_path: Path, **settings: Any) -> tuple[Any, Store]:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", **settings))
    return app.test_client(), app.config["BRIDGE_STORE"]


def post(client: Any, body: bytes) -> Any:
    return client.post("/webhooks/alertmanager", data=body, environ_base=LOOPBACK, content_type="application/json")


def stored(store: Store, table: sa.Table = alerts) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_batch_over_the_limit_is_refused_with_413_and_nothing_is_journaled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client, store = client_of(tmp_path, max_alerts_per_request=30)
    # truncatedAlerts would record a notice: refused, not even that is kept.
    body = alertmanager_batch(31).replace(b'"truncatedAlerts":0', b'"truncatedAlerts":4')

    with caplog.at_level(logging.WARNING, logger="bridge.web"):
        r = post(client, body)

    assert r.status_code == 413
    assert r.get_json()["error"] == "too_many_alerts"
    assert "at most 30 are accepted per request (BRIDGE_MAX_ALERTS_PER_REQUEST)" in r.get_json()["message"]
    assert (stored(store), stored(store, notices)) == (0, 0)
    assert "alertmanager webhook refused: the request carries 31 alerts" in caplog.text
    at_limit = post(client, alertmanager_batch(30))
    assert at_limit.status_code == 202 and len(at_limit.get_json()["alerts"]) == 30


def test_a_batch_that_fails_part_way_says_how_many_were_stored_and_a_retry_completes_it(tmp_path: Path) -> None:
    client, store = client_of(tmp_path)
    body = alertmanager_batch(JOURNAL_CHUNK + 10, "r")
    refused = f"r{JOURNAL_CHUNK + 5:05x}:firing:"  # the event id of an alert of the second chunk
    with store.engine.begin() as conn:  # the database refuses that row, as a full disk would
        conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.source_event_id = '{refused}' "
                             "BEGIN SELECT RAISE(ABORT, 'the database refuses this row'); END")

    r = post(client, body)

    # A 5xx: the sender retries (a 4xx would make it drop the batch).
    assert r.status_code == 500
    assert r.get_json() == {
        "error": "partly_accepted", "accepted": JOURNAL_CHUNK, "total": JOURNAL_CHUNK + 10,
        "message": f"{JOURNAL_CHUNK} of {JOURNAL_CHUNK + 10} alerts were stored; the bridge failed to store the "
                   "rest; retry the request: the stored ones count as duplicates"}
    assert stored(store) == JOURNAL_CHUNK

    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse")
    retried = post(client, body)
    assert retried.status_code == 202
    answers = retried.get_json()["alerts"]
    assert [bool(a.get("duplicate")) for a in answers] == [True] * JOURNAL_CHUNK + [False] * 10
    assert stored(store) == JOURNAL_CHUNK + 10


def test_the_answer_to_a_batch_lists_every_alert_in_order(tmp_path: Path) -> None:
    client, _ = client_of(tmp_path)
    r = post(client, alertmanager_batch(2 * JOURNAL_CHUNK + 1, "o"))
    assert r.status_code == 202
    answers = r.get_json()["alerts"]
    assert len(answers) == 2 * JOURNAL_CHUNK + 1
    assert [a["id"] for a in answers] == sorted(a["id"] for a in answers)
    assert {a["outcome"] for a in answers} == {"pending"}


def test_the_stage_is_rung_after_each_chunk_so_it_starts_on_the_first(tmp_path: Path) -> None:
    client, _ = client_of(tmp_path)
    address = doorbell_address(f"sqlite:///{tmp_path / 'b.db'}")
    assert address is not None
    listener = SocketListener(address)  # where the worker's pipeline stage listens

    def rings() -> int:
        count = 0
        with contextlib.suppress(BlockingIOError):
            while listener.sock.recv(64):
                count += 1
        return count

    try:
        body = alertmanager_batch(2 * JOURNAL_CHUNK + 1, "ring")
        assert post(client, body).status_code == 202
        assert rings() == 3  # one per chunk committed
        assert post(client, body).status_code == 200  # all repeats: nothing new to decide
        assert rings() == 0
    finally:
        listener.close()
