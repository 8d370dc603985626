"""`IncidentStore`: incidents outside the pipeline's batch: reading them, their timeline and post-mortem drafts,
what the follow-ups record on them (PagerDuty incident, details), and resolving one on our own (auto-resolve, or a
human resolved it in PagerDuty) with the follow-ups a resolution queues. `_state_of` is the policy's view of an
incident, for the pipeline stage and for resolving.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.model import Severity
from bridge.pipeline.policy import IncidentState
from bridge.store.outbox import OutboxStore
from bridge.store.schema import (
    OPEN,
    RESOLVED,
    UNFINISHED,
    JobKind,
    _dt,
    alerts,
    incidents,
    jobs,
    members,
    postmortems,
    timeline,
)
from bridge.store.views import MAX_ROW_ID, _alert_json, _incident_json, _timeline_json

# The draft waits a little after the resolution so late acknowledgements and notes make it in.
POSTMORTEM_DELAY = 30.0
# The resolution checklist follows the resolve event to PagerDuty (its handler also waits for a resolve still
# queued), so responders read it, and the final update, on a resolved incident.
RESOLUTION_NOTE_DELAY = 5.0



# Built once (the pipeline runs these for every alert it decides).
_TRIGGERS = sa.select(jobs.c.state, jobs.c.attempts).where(
    jobs.c.incident_id == sa.bindparam("incident"), jobs.c.kind == JobKind.EVENT, jobs.c.action == "trigger")
_TRIGGERS_LOCKED = _TRIGGERS.with_for_update()
_FIRING_MEMBERS = sa.select(sa.func.count()).select_from(members).where(
    members.c.incident_id == sa.bindparam("incident"), members.c.state == "firing")

class IncidentStore(OutboxStore):
    """The incidents, timeline and post-mortems tables (the pipeline's own writes are `JournalStore`'s)."""

    def _state_of(self, conn: Connection, row: Any) -> IncidentState:
        """The policy's view of the incident `row` (of `incidents`): severity, times, whether a trigger was
        attempted, pending triggers and firing members. On PostgreSQL it locks the incident's triggers."""
        # PostgreSQL: the plan depends on whether a trigger was attempted: lock the triggers so no worker of another
        # replica leases one between this read and the plan's writes (a trigger leased while being superseded
        # would page for an incident we then consider resolved). A lease in progress is waited for, and then seen
        # as sending.
        triggers = _TRIGGERS_LOCKED if self.is_postgres else _TRIGGERS
        trig = conn.execute(triggers, {"incident": row.id}).all()
        attempted = any(s in ("delivered", "dry_run", "sending", "dead") or a > 0 for s, a in trig)
        pending = sum(1 for s, a in trig if s == "pending" and a == 0)
        firing = int(conn.execute(_FIRING_MEMBERS, {"incident": row.id}).scalar() or 0)
        return IncidentState(row.id, Severity.parse(row.severity) if row.severity else None,
                             _dt(row.opened_at) or datetime.now(UTC), _dt(row.last_paged_at),
                             attempted, pending, firing_members=max(firing, 1), dedup_key=row.dedup_key,
                             resolved_at=_dt(row.resolved_at))

    def list_incidents(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Incidents, newest first."""
        q = sa.select(incidents).order_by(incidents.c.id.desc()).limit(limit)
        if status:
            q = q.where(incidents.c.status == status)
        with self.engine.connect() as conn:
            return [_incident_json(r) for r in conn.execute(q)]

    def find_incident(self, key: str) -> dict[str, Any] | None:
        """An incident by numeric id, dedup key (the newest) or PagerDuty incident id."""
        with self.engine.connect() as conn:
            q = sa.select(incidents).order_by(incidents.c.id.desc())
            row = None
            # ASCII digits within the id range only: int("²") fails, and a bigger number overflows the driver.
            if key.isascii() and key.isdigit() and int(key) <= MAX_ROW_ID:
                row = conn.execute(q.where(incidents.c.id == int(key))).first()
            if row is None:
                row = conn.execute(q.where(incidents.c.dedup_key == key)).first()
            if row is None:
                row = conn.execute(q.where(incidents.c.pd_incident_id == key)).first()
        return _incident_json(row) if row is not None else None

    def incident_timeline(self, incident_id: int) -> list[dict[str, Any]]:
        """The incident's timeline, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(timeline).where(timeline.c.incident_id == incident_id)
                                .order_by(timeline.c.at, timeline.c.id)).all()
        return [_timeline_json(r) for r in rows]

    def add_timeline(self, incident_id: int, now: float, kind: str, description: str, personnel: str = "",
                     actions: str = "") -> None:
        """Append one timeline entry."""
        with self.transaction() as conn:
            conn.execute(timeline.insert().values(incident_id=incident_id, at=now, kind=kind,
                                                  description=description, personnel=personnel,
                                                  actions=actions))

    def incidents_with_first_alert(self, limit: int = 20000) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Incidents, newest first, each with its first alert (one query; for related-incident lookups)."""
        first = (sa.select(alerts.c.incident_id, sa.func.min(alerts.c.id).label("first_id"))
                 .where(alerts.c.incident_id.is_not(None)).group_by(alerts.c.incident_id).subquery())
        q = (sa.select(incidents, alerts.c.alert_json)
             .select_from(incidents.outerjoin(first, first.c.incident_id == incidents.c.id)
                          .outerjoin(alerts, alerts.c.id == first.c.first_id))
             .order_by(incidents.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(_incident_json(r), {"alert": json.loads(r.alert_json)} if r.alert_json else None) for r in rows]

    def incident_row(self, incident_id: int) -> dict[str, Any] | None:
        """One incident as JSON, by id."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
        return _incident_json(row) if row is not None else None

    def set_pagerduty_incident(self, incident_id: int, pd_id: str, html_url: str | None) -> None:
        """Remember which PagerDuty incident ours is."""
        with self.transaction() as conn:
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                pd_incident_id=pd_id, pd_html_url=html_url))

    def merge_incident_details(self, incident_id: int, **values: Any) -> None:
        """Add keys to an incident's details (related incidents found, roles requested...)."""
        with self.transaction(serialized=True) as conn:
            row = conn.execute(sa.select(incidents.c.details_json).where(incidents.c.id == incident_id)).one()
            details = json.loads(row.details_json)
            details.update(values)
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                details_json=json.dumps(details, default=str)))

    def resolve_incident(self, incident_id: int, now: float, reason: str, *, send_resolve: bool) -> bool:
        """Resolve an open incident on our own (auto-resolve, or a human resolved it in PagerDuty).

        With `send_resolve`, a resolve event is queued when a trigger was ever attempted. Returns False when
        the incident was not open.
        """
        with self.transaction(serialized=True) as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
            if row is None or row.status != OPEN:
                return False
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                status=RESOLVED, resolved_at=now))
            conn.execute(members.update().where(members.c.incident_id == incident_id).values(
                state="resolved", updated_at=now))
            state = self._state_of(conn, row)
            conn.execute(jobs.update().where(
                jobs.c.dedup_key == row.dedup_key, jobs.c.kind == JobKind.EVENT, jobs.c.action == "trigger",
                jobs.c.state == "pending").values(state="superseded", reason="resolved_first", updated_at=now))
            if send_resolve and state.any_trigger_attempted:
                self._enqueue(conn, JobKind.EVENT, row.dedup_key, incident_id, None,
                              {"event_action": "resolve", "dedup_key": row.dedup_key}, now, now, action="resolve",
                              priority=0)
            conn.execute(timeline.insert().values(incident_id=incident_id, at=now, kind="resolution",
                                                  description=reason, personnel="incident-bridge", actions=""))
            self._after_resolve(conn, row, now)
        return True

    def _after_resolve(self, conn: Connection, row: Any, now: float) -> None:
        """Queue the follow-ups of a resolution, in the transaction that records it (the worker decides whether
        each is needed): the resolution checklist note, right after the resolve, and the post-mortem draft, a
        little later.

        An incident can resolve more than once (it reopens when the resolution did not hold): each resolution gets
        its own checklist note (`resolution` counts them), and the draft is made again unless one is still queued.
        """
        done = int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.incident_id == row.id, jobs.c.kind == JobKind.RESOLUTION_NOTE)).scalar() or 0)
        self._enqueue(conn, JobKind.RESOLUTION_NOTE, row.dedup_key, row.id, None, {"resolution": done + 1}, now,
                      now + RESOLUTION_NOTE_DELAY)
        queued = conn.execute(sa.select(jobs.c.id).where(
            jobs.c.incident_id == row.id, jobs.c.kind == JobKind.POSTMORTEM, jobs.c.state.in_(UNFINISHED))).first()
        if queued is None:
            self._enqueue(conn, JobKind.POSTMORTEM, row.dedup_key, row.id, None, {}, now, now + POSTMORTEM_DELAY)

    def save_postmortem(self, incident_id: int, markdown: str, now: float) -> None:
        """Store (or replace) an incident's post-mortem draft."""
        with self.transaction() as conn:
            updated = conn.execute(postmortems.update().where(postmortems.c.incident_id == incident_id).values(
                markdown=markdown, drafted_at=now)).rowcount
            if not updated:
                conn.execute(postmortems.insert().values(incident_id=incident_id, markdown=markdown,
                                                         drafted_at=now))

    def get_postmortem(self, incident_id: int) -> str | None:
        """The stored draft, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(postmortems.c.markdown).where(
                postmortems.c.incident_id == incident_id)).first()
        return row.markdown if row else None

    def incidents_after(self, after_id: int, *, since: float, upto_id: int, limit: int) -> list[dict[str, Any]]:
        """A slice of the incidents opened since `since`, in id order: at most `limit` with
        `after_id < id <= upto_id`. Each is what reconciliation reads of it: `id`, `dedup_key`, `status` and
        `last_paged_at` (seconds since the epoch, None when never paged)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(incidents.c.id, incidents.c.dedup_key, incidents.c.status,
                                          incidents.c.last_paged_at)
                                .where(incidents.c.id > after_id, incidents.c.id <= upto_id,
                                       incidents.c.opened_at >= since)
                                .order_by(incidents.c.id).limit(limit)).all()
        return [{"id": r.id, "dedup_key": r.dedup_key, "status": r.status, "last_paged_at": r.last_paged_at}
                for r in rows]

    def count_incidents_after(self, after_id: int, *, since: float, upto_id: int) -> int:
        """How many incidents `incidents_after` has left to give after `after_id` (all of them, not one slice)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(incidents).where(
                incidents.c.id > after_id, incidents.c.id <= upto_id, incidents.c.opened_at >= since)).scalar() or 0)

    def last_incident_id(self) -> int:
        """The id of the newest incident (0 when there is none)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(incidents.c.id))).scalar() or 0)

    def incident_alerts(self, incident_id: int) -> list[dict[str, Any]]:
        """The alerts of an incident, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(alerts).where(alerts.c.incident_id == incident_id)
                                .order_by(alerts.c.id)).all()
        return [_alert_json(r) for r in rows]

    def triggers_delivered(self, incident_id: int, *, dry_run: bool = False) -> bool:
        """Whether a trigger of this incident reached PagerDuty; with `dry_run`, or was printed in its place."""
        states = ("delivered", "dry_run") if dry_run else ("delivered",)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(jobs.c.id).where(
                jobs.c.incident_id == incident_id, jobs.c.kind == JobKind.EVENT, jobs.c.action == "trigger",
                jobs.c.state.in_(states)).limit(1)).first() is not None

    def event_unfinished(self, incident_id: int, action: str) -> bool:
        """Whether an event of this incident with `action` (trigger | resolve) is still queued or being sent."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(jobs.c.id).where(
                jobs.c.incident_id == incident_id, jobs.c.kind == JobKind.EVENT, jobs.c.action == action,
                jobs.c.state.in_(UNFINISHED)).limit(1)).first() is not None

    def last_event_action(self, incident_id: int) -> str | None:
        """The action of the newest delivered event of this incident."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs.c.action).where(
                jobs.c.incident_id == incident_id, jobs.c.kind == JobKind.EVENT, jobs.c.state == "delivered")
                .order_by(jobs.c.delivered_at.desc()).limit(1)).first()
        return row.action if row else None
