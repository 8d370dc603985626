"""Small valid webhook bodies that tests vary one field of: a Datadog alert and an Alertmanager webhook with one
firing alert, with these annotations (tests/unit/web/test_hostile_bodies.py and its PostgreSQL part,
tests/integration/test_hostile_bodies_postgres.py); and one Alertmanager webhook carrying a whole batch of alerts
(tests/integration/test_batch_e2e.py, benchmarks/resilience_batch.py).
"""

from __future__ import annotations

import json
from typing import Any

DATADOG = {"id": "hostile-1", "alert_id": "77", "title": "Checkout errors", "transition": "Triggered",
           "text": "bridge.value: 30", "tags": "dimension:users_affected_pct,service:checkout"}


def alertmanager_body(annotations: dict[str, str]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Errors", "dimension": "users_affected_pct"},
         "annotations": annotations, "startsAt": "2026-03-06T11:00:00Z", "fingerprint": "f1"}]}


def alertmanager_batch(count: int, run: str = "b") -> bytes:
    """One Alertmanager webhook (version 4) with `count` firing alerts, each its own label set and fingerprint, so
    each is its own journal entry and incident; `run` keeps two batches apart.

    As lean as Alertmanager's body gets (about 95 bytes an alert, no annotations), so 10,000 alerts (959 KB) fit
    the default 1 MiB body limit, like the 879 KB body of the 10,000-alert report.
    """
    alerts = [{"status": "firing", "labels": {"alertname": "Batch", "instance": f"{run}-{i}"},
               "fingerprint": f"{run}{i:05x}"} for i in range(count)]
    body = {"version": "4", "status": "firing", "receiver": "bridge", "groupKey": f"{{}}:{{run=\"{run}\"}}",
            "groupLabels": {"alertname": "Batch"}, "commonLabels": {"alertname": "Batch"},
            "truncatedAlerts": 0, "alerts": alerts}
    return json.dumps(body, separators=(",", ":")).encode()
