"""Small valid webhook bodies that tests vary one field of: a Datadog alert and an Alertmanager webhook with one
firing alert, with these annotations (tests/unit/web/test_hostile_bodies.py and its PostgreSQL part,
tests/integration/test_hostile_bodies_postgres.py).
"""

from __future__ import annotations

from typing import Any

DATADOG = {"id": "hostile-1", "alert_id": "77", "title": "Checkout errors", "transition": "Triggered",
           "text": "bridge.value: 30", "tags": "dimension:users_affected_pct,service:checkout"}


def alertmanager_body(annotations: dict[str, str]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Errors", "dimension": "users_affected_pct"},
         "annotations": annotations, "startsAt": "2026-03-06T11:00:00Z", "fingerprint": "f1"}]}
