"""Incidents written straight into a bridge's database, as if it had paged them before: the state a restart
starts from (a week of incidents), made in one transaction instead of one webhook and one page each."""

from __future__ import annotations

import json

from bridge.store import JobKind, Store, incidents, jobs


def seed_paged_incidents(store: Store, count: int, *, paged_at: float, prefix: str = "seed",
                         status: str = "open") -> list[str]:
    """`count` incidents opened and paged at `paged_at`, each with its trigger delivered to PagerDuty (what
    reconciliation looks up), in id order. Returns their dedup keys (`<prefix>:<n>`)."""
    keys = [f"{prefix}:{n}" for n in range(count)]
    with store.transaction() as conn:
        # Ids from the database (PostgreSQL's sequence moves on, so the bridge's next incident gets a new one).
        ids = conn.execute(incidents.insert().returning(incidents.c.id, sort_by_parameter_order=True), [
            {"dedup_key": key, "status": status, "severity": "P2", "title": f"seeded incident {n}",
             "source": "datadog", "service": "checkout", "rule": "seeded", "storm_key": f"seeded:{key}",
             "opened_at": paged_at, "resolved_at": paged_at + 60 if status == "resolved" else None,
             "last_alert_at": paged_at, "last_paged_at": paged_at, "alert_count": 1, "categories_json": "[]",
             "dimensions_json": "{}", "tags_json": "[]", "details_json": "{}"}
            for n, key in enumerate(keys)]).scalars().all()
        conn.execute(jobs.insert(), [
            {"kind": JobKind.EVENT, "dedup_key": key, "incident_id": incident_id, "action": "trigger",
             "priority": 2, "payload_json": json.dumps({"event_action": "trigger", "dedup_key": key, "payload": {
                 "summary": f"seeded incident {n}", "source": "seed", "severity": "error"}}),
             "state": "delivered", "attempts": 1, "internal_failures": 0, "next_attempt_at": paged_at,
             "created_at": paged_at, "updated_at": paged_at, "delivered_at": paged_at}
            for n, (key, incident_id) in enumerate(zip(keys, ids, strict=True))])
    return keys
