"""Retention (`bridge.store.retention`, BRIDGE_RETENTION): old rows go, young and still-needed ones stay.

Rows are written straight into the tables with the times each case needs (a month of traffic cannot be waited
for); `prune` then runs as the worker's pass runs it, in batches.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.store import Store, alerts, incidents, jobs
from bridge.store.retention import Pruner, cutoff, prune
from bridge.store.schema import notices

DAY = 86400.0
NOW = 1_800_000_000.0
RETENTION = 30 * DAY
OLD = NOW - 40 * DAY
YOUNG = NOW - 2 * DAY


def incident(store: Store, name: str, *, status: str, resolved_at: float | None = None) -> int:
    with store.transaction() as conn:
        return int(conn.execute(incidents.insert().values(
            dedup_key=name, status=status, title=name, source="datadog", opened_at=OLD - DAY,
            resolved_at=resolved_at, last_alert_at=OLD, alert_count=1)).inserted_primary_key[0])


def alert(store: Store, name: str, *, at: float, incident_id: int | None = None, decided: bool = True) -> int:
    with store.transaction() as conn:
        return int(conn.execute(alerts.insert().values(
            source="datadog", source_event_id=name, received_at=at, title=name, state="firing", group_key=name,
            dedup_key=name, action="page", outcome="paged" if decided else "pending", incident_id=incident_id,
            alert_json="{}", decision_json="{}", journaled_at=at, decided_at=at if decided else None,
        )).inserted_primary_key[0])


def job(store: Store, name: str, *, at: float, state: str, kind: str = "event",
        incident_id: int | None = None) -> int:
    with store.transaction() as conn:
        return int(conn.execute(jobs.insert().values(
            kind=kind, dedup_key=name, incident_id=incident_id, action="trigger", priority=2,
            payload_json=json.dumps({"name": name}), state=state, attempts=1, next_attempt_at=at, created_at=at,
            updated_at=at)).inserted_primary_key[0])


def notice(store: Store, at: float) -> int:
    with store.transaction() as conn:
        return int(conn.execute(notices.insert().values(
            source="datadog", kind="k", level="info", message="m", details_json="{}", created_at=at,
        )).inserted_primary_key[0])


def ids(store: Store, table: sa.Table) -> set[int]:
    with store.engine.connect() as conn:
        return {int(i) for i in conn.execute(sa.select(table.c.id)).scalars()}


def world(store: Store) -> dict[str, dict[str, int]]:
    """One row for each case; `expected[name]` says whether it must survive a pass."""
    open_incident = incident(store, "open", status="open")
    old_resolved = incident(store, "old-resolved", status="resolved", resolved_at=OLD)
    recent_resolved = incident(store, "recent-resolved", status="resolved", resolved_at=YOUNG)
    a = {
        "old-decided-no-incident": alert(store, "a1", at=OLD),
        "old-undecided": alert(store, "a2", at=OLD, decided=False),
        "young-decided": alert(store, "a3", at=YOUNG),
        "old-of-open-incident": alert(store, "a4", at=OLD, incident_id=open_incident),
        "first-of-old-resolved-incident": alert(store, "a5", at=OLD, incident_id=old_resolved),
        "later-of-old-resolved-incident": alert(store, "a6", at=OLD + 1, incident_id=old_resolved),
        "old-of-recently-resolved-incident": alert(store, "a7", at=OLD, incident_id=recent_resolved),
        "second-old-of-recently-resolved": alert(store, "a8", at=OLD + 1, incident_id=recent_resolved),
    }
    j = {
        "old-delivered-no-incident": job(store, "j1", at=OLD, state="delivered"),
        "old-superseded-of-old-resolved": job(store, "j2", at=OLD, state="superseded", incident_id=old_resolved),
        "old-discarded": job(store, "j3", at=OLD, state="discarded"),
        "old-dry-run": job(store, "j4", at=OLD, state="dry_run"),
        "old-pending": job(store, "j5", at=OLD, state="pending"),
        "old-dead": job(store, "j6", at=OLD, state="dead"),
        "old-delivered-of-open-incident": job(store, "j7", at=OLD, state="delivered", incident_id=open_incident),
        "old-delivered-of-recently-resolved": job(store, "j8", at=OLD, state="delivered",
                                                  incident_id=recent_resolved),
        "young-delivered": job(store, "j9", at=YOUNG, state="delivered"),
        "old-reconcile-not-newest": job(store, "j10", at=OLD, state="delivered", kind="reconcile"),
        "old-reconcile-newest-of-its-kind": job(store, "j11", at=OLD + 1, state="delivered", kind="reconcile"),
    }
    n = {"old-notice": notice(store, OLD), "young-notice": notice(store, YOUNG)}
    return {"alerts": a, "jobs": j, "notices": n}


KEPT = {
    "old-decided-no-incident": False, "old-undecided": True, "young-decided": True, "old-of-open-incident": True,
    "first-of-old-resolved-incident": True, "later-of-old-resolved-incident": False,
    "old-of-recently-resolved-incident": True, "second-old-of-recently-resolved": True,
    "old-delivered-no-incident": False, "old-superseded-of-old-resolved": False, "old-discarded": False,
    "old-dry-run": False, "old-pending": True, "old-dead": True, "old-delivered-of-open-incident": True,
    "old-delivered-of-recently-resolved": True, "young-delivered": True, "old-reconcile-not-newest": False,
    "old-reconcile-newest-of-its-kind": True, "old-notice": False, "young-notice": True,
}
TABLES = {"alerts": alerts, "jobs": jobs, "notices": notices}


@pytest.fixture(params=[500, 1], ids=["one-batch", "batches-of-one"])
def pruned(request: pytest.FixtureRequest, store: Store) -> tuple[dict[str, dict[str, int]], Store, Any]:
    rows = world(store)
    result = prune(store, NOW, RETENTION, batch=request.param, pause=0)
    return rows, store, result


@pytest.mark.parametrize("case", sorted(KEPT))
def test_what_a_pass_prunes_and_keeps(pruned: tuple[dict[str, dict[str, int]], Store, Any], case: str) -> None:
    rows, store, _ = pruned
    kind = next(k for k, named in rows.items() if case in named)
    assert (rows[kind][case] in ids(store, TABLES[kind])) is KEPT[case]


def test_a_pass_counts_what_it_pruned(pruned: tuple[dict[str, dict[str, int]], Store, Any]) -> None:
    _, _, result = pruned
    gone = [c for c, kept in KEPT.items() if not kept]
    assert result.total == len(gone)
    assert result.pruned == {"alerts": 2, "jobs": 5, "notices": 1}


def test_incidents_stay_and_a_second_pass_finds_nothing(store: Store) -> None:
    world(store)
    before = ids(store, incidents)
    prune(store, NOW, RETENTION, pause=0)
    assert ids(store, incidents) == before
    assert prune(store, NOW, RETENTION, pause=0).total == 0


def test_retention_off_prunes_nothing(store: Store) -> None:
    world(store)
    assert prune(store, NOW, 0).total == 0
    assert cutoff(NOW, 0) is None and cutoff(NOW, RETENTION) == NOW - RETENTION


def test_a_reopened_incident_keeps_its_alerts_even_when_chosen_before(store: Store) -> None:
    """The candidates are read without the lock; the delete re-checks the incident."""
    from bridge.store.retention import _alert_candidates, _alert_delete

    resolved = incident(store, "r", status="resolved", resolved_at=OLD)
    alert(store, "first", at=OLD, incident_id=resolved)
    later = alert(store, "later", at=OLD + 1, incident_id=resolved)
    with store.engine.connect() as conn:
        chosen = list(conn.execute(_alert_candidates(NOW - RETENTION, 10)).scalars())
    assert chosen == [later]
    with store.transaction() as conn:  # reopened between the read and the delete
        conn.execute(incidents.update().where(incidents.c.id == resolved).values(status="open", resolved_at=None))
    with store.transaction() as conn:
        assert conn.execute(_alert_delete(chosen, NOW - RETENTION)).rowcount == 0
    assert later in ids(store, alerts)


def test_the_pruner_thread_runs_a_pass_and_stops(store: Store) -> None:
    rows = world(store)
    pruner = Pruner(store, RETENTION, clock=lambda: NOW, first_after=0.0, interval=3600.0)
    thread = threading.Thread(target=pruner.run)
    thread.start()
    try:
        deadline = 200
        while rows["notices"]["old-notice"] in ids(store, notices) and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
    finally:
        pruner.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert rows["notices"]["old-notice"] not in ids(store, notices)
    assert rows["alerts"]["old-decided-no-incident"] not in ids(store, alerts)


@pytest.mark.parametrize(("raw", "seconds"), [
    (None, 30 * DAY), ("", 30 * DAY), ("30d", 30 * DAY), ("1w", 7 * DAY), ("86400", DAY), ("off", 0.0),
    ("0", 0.0), ("OFF", 0.0), ("forever", 0.0),
], ids=["unset", "empty", "30d", "1w", "seconds", "off", "zero", "upper-off", "forever"])
def test_retention_setting(raw: str | None, seconds: float) -> None:
    environ = {} if raw is None else {"BRIDGE_RETENTION": raw}
    assert Settings.from_env(environ).retention_seconds == seconds


@pytest.mark.parametrize(("raw", "needle"), [
    ("1h", "shorter than a day"), ("23h59m", "shorter than a day"), ("soon", "not a duration"),
    ("-1d", "not a duration"),
], ids=["hour", "just-under-a-day", "word", "negative"])
def test_a_retention_that_is_too_short_or_not_a_duration_is_refused_naming_it(raw: str, needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BRIDGE_RETENTION": raw})
    text = str(raised.value)
    assert "BRIDGE_RETENTION" in text and needle in text
