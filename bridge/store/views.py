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
from bridge.store.outbox import _job_json
from bridge.store.schema import JobKind, _iso, alerts, audit, incidents, jobs, silences, timeline


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

    def alert_record(self, alert_id: int) -> dict[str, Any] | None:
        """Everything the journal and the pipeline stage recorded of one alert, for `alerts --why` (None when
        there is no such alert); `bridge.ruletools.why` tells the story from it.

        - `alert`: the stored alert (as `get_alert`, without the raw payload) and `journaled_at` (seconds);
        - `incident`: the incident it opened, joined or was attached to (inhibition, storm), or None;
        - `timeline`: that incident's entries written as the alert was decided (at its receipt time);
        - `jobs`: the Events API jobs queued for it (a trigger or a resolve), oldest first;
        - `silence`: the silence that suppressed it, with `created_by` (the audit log's actor), or None;
        - `digest`: for an alert folded into a storm, the storm digest job that was due when it arrived;
        - `undecided_before`: for an alert not decided yet, how many older journal entries wait before it.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
            if row is None:
                return None
            out: dict[str, Any] = {"alert": _alert_json(row), "journaled_at": row.journaled_at, "incident": None,
                                   "timeline": [], "jobs": [], "silence": None, "digest": None,
                                   "undecided_before": 0}
            if row.incident_id is not None:
                incident = conn.execute(sa.select(incidents).where(incidents.c.id == row.incident_id)).first()
                out["incident"] = _incident_json(incident) if incident is not None else None
                if row.journaled_at is not None:
                    # The stage writes an entry's timeline at its receipt time (`_apply`): the same float.
                    out["timeline"] = [_timeline_json(t) for t in conn.execute(sa.select(timeline).where(
                        timeline.c.incident_id == row.incident_id, timeline.c.at == row.journaled_at)
                        .order_by(timeline.c.id))]
                if row.outcome == "storm" and row.journaled_at is not None:
                    # One digest is pending per storm incident; an alert is folded into the one pending when it
                    # arrived, or opens the next: the newest created at or before its receipt.
                    digest = conn.execute(sa.select(jobs).where(
                        jobs.c.incident_id == row.incident_id, jobs.c.kind == JobKind.STORM_DIGEST,
                        jobs.c.created_at <= row.journaled_at).order_by(jobs.c.id.desc()).limit(1)).first()
                    out["digest"] = _job_json(digest) if digest is not None else None
                # An event job carries the incident it was queued for: found through (incident_id, kind), indexed,
                # where jobs.alert_id alone would scan the whole outbox.
                out["jobs"] = [_job_json(j) for j in conn.execute(sa.select(jobs).where(
                    jobs.c.incident_id == row.incident_id, jobs.c.kind == JobKind.EVENT, jobs.c.alert_id == alert_id)
                    .order_by(jobs.c.id))]
            silence_id = (json.loads(row.decision_json).get("details") or {}).get("silence_id")
            if silence_id is not None:
                found = conn.execute(sa.select(silences).where(silences.c.id == int(silence_id))).first()
                if found is not None:
                    created_by = conn.execute(sa.select(audit.c.actor).where(
                        audit.c.action == "silence.create", audit.c.target == str(found.id))
                        .order_by(audit.c.id).limit(1)).scalar()
                    spec = json.loads(found.spec_json)
                    out["silence"] = {"id": found.id, "owner": found.owner, "reason": found.reason,
                                      "matchers": spec.get("matchers") or [],
                                      "description": spec.get("description") or "",
                                      "starts_at": spec.get("starts_at"), "ends_at": _iso(found.ends_at),
                                      "expired_at": _iso(found.expired_at), "created_at": _iso(found.created_at),
                                      "created_by": created_by}
            if row.decided_at is None:
                out["undecided_before"] = int(conn.execute(sa.select(sa.func.count()).where(
                    alerts.c.decided_at.is_(None), alerts.c.id < alert_id)).scalar() or 0)
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


def _timeline_json(r: Any) -> dict[str, Any]:
    return {"at": _iso(r.at), "kind": r.kind, "description": r.description, "personnel": r.personnel,
            "actions": r.actions}


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
