"""`ActivityStore`: what the console's chart and silence preview read of the last day (the alerts received since a
time, on the `received_at` index), without the raw payloads."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from bridge.model import Alert
from bridge.store.base import StoreBase
from bridge.store.schema import alerts


class ActivityStore(StoreBase):
    """Recent alerts, light."""

    def alert_activity(self, since: float) -> list[tuple[float, str | None, str | None]]:
        """(received_at seconds, severity, action) of every alert received at or after `since`, oldest first."""
        q = (sa.select(alerts.c.received_at, alerts.c.severity, alerts.c.action)
             .where(alerts.c.received_at >= since).order_by(alerts.c.received_at))
        with self.engine.connect() as conn:
            return [(float(r.received_at), r.severity, r.action) for r in conn.execute(q)]

    def alerts_since(self, since: float, limit: int) -> list[tuple[int, Alert, dict[str, Any]]]:
        """(id, Alert, summary) of at most `limit` alerts received at or after `since`, newest first; the summary
        has the stored source, title, service, severity, action and outcome."""
        q = (sa.select(alerts.c.id, alerts.c.alert_json, alerts.c.source, alerts.c.title, alerts.c.service,
                       alerts.c.severity, alerts.c.action, alerts.c.outcome, alerts.c.received_at)
             .where(alerts.c.received_at >= since).order_by(alerts.c.received_at.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(r.id, Alert.from_dict(json.loads(r.alert_json)),
                 {"id": r.id, "source": r.source, "title": r.title, "service": r.service, "severity": r.severity,
                  "action": r.action, "outcome": r.outcome, "received_at": r.received_at}) for r in rows]
