"""Read views: the stored alerts as the API and replays read them, and the JSON shape of each kind of row
(alert, incident, silence) that every part of the store answers with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from bridge.model import Alert
from bridge.store.base import StoreBase
from bridge.store.schema import _iso, alerts


class ViewStore(StoreBase):
    """Reading the stored alerts."""

    def list_alerts(self, limit: int = 100, incident_id: int | None = None) -> list[dict[str, Any]]:
        """Stored alerts with their decisions, newest first."""
        q = sa.select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if incident_id is not None:
            q = q.where(alerts.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [_alert_json(r) for r in conn.execute(q)]

    def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        """One stored alert with its decision and raw payload."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            return None
        out = _alert_json(row)
        out["raw"] = json.loads(row.raw_json) if row.raw_json else None
        return out

    def iter_alert_history(self, limit: int | None = None) -> Iterable[tuple[Alert, dict[str, Any]]]:
        """Stored alerts in arrival order as (Alert, stored decision) for replays."""
        q = sa.select(alerts).order_by(alerts.c.id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                data = json.loads(row.alert_json)
                data["raw"] = json.loads(row.raw_json) if row.raw_json else None
                yield Alert.from_dict(data), json.loads(row.decision_json)


def _silence_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "spec": json.loads(r.spec_json), "owner": r.owner, "reason": r.reason,
            "ends_at": r.ends_at, "expired_at": r.expired_at, "created_at": r.created_at}


def _alert_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "source": r.source, "source_event_id": r.source_event_id,
            "received_at": _iso(r.received_at), "title": r.title, "state": r.state, "dedup_key": r.dedup_key,
            "group_key": r.group_key, "service": r.service, "severity": r.severity, "action": r.action,
            "rule": r.rule, "outcome": r.outcome, "incident_id": r.incident_id,
            "decided_at": _iso(r.decided_at) if r.decided_at else None,
            "alert": json.loads(r.alert_json), "decision": json.loads(r.decision_json)}


def _incident_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "dedup_key": r.dedup_key, "status": r.status, "severity": r.severity, "title": r.title,
            "source": r.source, "service": r.service, "rule": r.rule, "opened_at": _iso(r.opened_at),
            "resolved_at": _iso(r.resolved_at), "last_alert_at": _iso(r.last_alert_at),
            "last_paged_at": _iso(r.last_paged_at), "alert_count": r.alert_count,
            "categories": json.loads(r.categories_json), "dimensions": json.loads(r.dimensions_json),
            "tags": json.loads(r.tags_json), "pagerduty": {"id": r.pd_incident_id, "html_url": r.pd_html_url},
            "details": json.loads(r.details_json)}
