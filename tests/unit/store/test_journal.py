"""The receipt's journal on SQLite: a big request is committed in chunks with the writer free between them, a
chunk that fails keeps the chunks before it (and a retry finds them as duplicates), repeats of a (source, event
id) are answered with the stored entry wherever they fall. The same on PostgreSQL is in
tests/integration/test_store_postgres.py.

The failures are the database's own: a trigger refuses one row, as a full disk or a broken column would.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.model import Action, Alert, AlertState, Decision, Notice, Severity
from bridge.store import JOURNAL_CHUNK, PENDING, Accepted, JournalInterrupted, Store, alerts
from bridge.store.schema import notices

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOTICE = Notice(source="alertmanager", kind="alerts_truncated", level="warning", message="3 alerts truncated")


def batch(count: int, prefix: str = "e") -> list[tuple[Alert, Decision]]:
    """`count` alerts of one request, each its own event id and group, as a receiver and the rules give them."""
    out = []
    for i in range(count):
        alert = Alert(source="alertmanager", source_event_id=f"{prefix}-{i:05d}", received_at=T0,
                      title=f"disk full on host-{i}", state=AlertState.FIRING, group_key=f"alertmanager:{prefix}{i}")
        out.append((alert, Decision(action=Action.PAGE, severity=Severity.P2, rule="disk",
                                    reasons=("rule disk matched",), urgency=Severity.P2.urgency)))
    return out


def refuse(store: Store, event_id: str) -> None:
    """Make the database refuse the row of `event_id`, as a full disk would refuse a write."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.source_event_id = '{event_id}' "
                             "BEGIN SELECT RAISE(ABORT, 'the database refuses this row'); END")


def stored(store: Store, table: sa.Table = alerts) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def ids(results: Sequence[Accepted]) -> list[int]:
    return [r.alert_id for r in results]


def test_a_big_request_is_committed_in_chunks_with_the_writer_free_between_them(store: Store, tmp_path: Path) -> None:
    # Another web worker's receipt, sent once the first chunk is committed, is journaled before the second chunk:
    # the writer is not held for the whole request.
    other = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")
    chunks: list[list[int]] = []
    between: list[Accepted] = []

    def committed(done: Sequence[Accepted]) -> None:
        chunks.append(ids(done))
        if len(chunks) == 1:
            sender = threading.Thread(target=lambda: between.extend(other.journal(batch(1, "other"), [], T0)))
            sender.start()
            sender.join(timeout=10)

    results = store.journal(batch(2 * JOURNAL_CHUNK + 100), [NOTICE], T0, on_commit=committed)

    assert [len(c) for c in chunks] == [JOURNAL_CHUNK, JOURNAL_CHUNK, 100]
    assert ids(results) == [i for c in chunks for i in c]
    assert all(r.outcome == PENDING and not r.duplicate for r in results)
    [theirs] = between
    assert max(chunks[0]) < theirs.alert_id < min(chunks[1])
    assert stored(store) == 2 * JOURNAL_CHUNK + 101
    assert stored(store, notices) == 1  # with the first chunk, once


def test_a_chunk_that_fails_keeps_the_chunks_before_it_and_a_retry_absorbs_them(store: Store) -> None:
    request = batch(2 * JOURNAL_CHUNK + 100)
    refuse(store, f"e-{JOURNAL_CHUNK + 100:05d}")  # in the second chunk

    with pytest.raises(JournalInterrupted) as interrupted:
        store.journal(request, [NOTICE], T0)

    assert (len(interrupted.value.accepted), interrupted.value.total) == (JOURNAL_CHUNK, 2 * JOURNAL_CHUNK + 100)
    assert isinstance(interrupted.value.__cause__, sqlite3.IntegrityError)
    assert stored(store) == JOURNAL_CHUNK  # the second chunk rolled back whole; the first stays
    assert stored(store, notices) == 1

    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse")
    retried = store.journal(request, [], T0)
    assert [r.duplicate for r in retried] == [True] * JOURNAL_CHUNK + [False] * (JOURNAL_CHUNK + 100)
    assert ids(retried[:JOURNAL_CHUNK]) == ids(interrupted.value.accepted)
    assert stored(store) == 2 * JOURNAL_CHUNK + 100


def test_a_first_chunk_that_fails_stores_nothing(store: Store) -> None:
    refuse(store, "e-00010")
    with pytest.raises(sqlite3.IntegrityError):
        store.journal(batch(JOURNAL_CHUNK + 1), [NOTICE], T0)
    assert (stored(store), stored(store, notices)) == (0, 0)


def test_repeats_are_answered_with_the_stored_entry_within_a_chunk_across_chunks_and_requests(store: Store) -> None:
    [earlier] = store.journal(batch(1, "old"), [], T0)
    request = batch(JOURNAL_CHUNK + 10)
    request[3] = request[1]  # the same event twice in one chunk
    request[JOURNAL_CHUNK + 5] = request[2]  # and in the next chunk
    request[7] = batch(1, "old")[0]  # one stored by an earlier request

    results = store.journal(request, [], T0)

    assert [i for i, r in enumerate(results) if r.duplicate] == [3, 7, JOURNAL_CHUNK + 5]
    assert results[3].alert_id == results[1].alert_id
    assert results[JOURNAL_CHUNK + 5].alert_id == results[2].alert_id
    assert results[7].alert_id == earlier.alert_id
    assert stored(store) == 1 + JOURNAL_CHUNK + 10 - 3


def test_a_request_of_notices_only_stores_them(store: Store) -> None:
    # An SNS subscription confirmation carries a notice and no alert.
    assert store.journal([], [NOTICE], T0) == []
    assert (stored(store), stored(store, notices)) == (0, 1)
    [kept] = store.list_notices()
    assert (kept["kind"], kept["message"]) == ("alerts_truncated", "3 alerts truncated")
