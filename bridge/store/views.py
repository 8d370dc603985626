"""Read views: the stored alerts as the API and replays read them, and the JSON shape of each kind of row
(alert, incident, silence) that every part of the store answers with.

The API's lists are pages: `AlertQuery` / `IncidentQuery` say which rows match (read from query parameters by
`alert_query` / `incident_query`, which answer 400 naming the parameter and the allowed values), and `alert_page` /
`incident_page` answer one `Page` of them, newest first, with the count of all matches and an opaque cursor for
the next page. The cursor is keyset paging on the id (`id < last id seen`): rows that arrive while a client pages
never shift the pages, as an offset would.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.errors import RequestError
from bridge.model import Action, Alert, AlertState, Severity
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


# The values a filter may take where the column holds a closed set. Outcomes are the pipeline's
# (`bridge.pipeline.policy.plan`), "pending" before it decided, "failed" when it could not.
SEVERITIES = tuple(s.name for s in Severity) + ("none",)  # "none": alerts and incidents without a severity
ACTIONS = tuple(a.value for a in Action)
OUTCOMES = ("pending", "failed", "recorded", "suppressed", "inhibited", "storm", "opened", "raised", "attached",
            "repaged", "reopened", "member_recovered", "resolved_before_page", "resolved", "nothing_to_resolve")
INCIDENT_STATUSES = ("open", "resolved")
ALERT_STATES = tuple(s.value for s in AlertState)
# The largest row id either database holds (a signed 64-bit integer); a bigger number names no row, and would
# overflow the driver's integer binding (SQLite raises OverflowError) if it reached a query.
MAX_ROW_ID = 2**63 - 1
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The cursor's version prefix: a later change of the keyset can refuse old cursors with a clear 400.
_CURSOR_PREFIX = "k1:"


@dataclass(frozen=True)
class AlertQuery:
    """Which stored alerts match: every given filter must hold; a filter with several values matches any of them.
    `since` (inclusive) and `until` (exclusive) bound the receipt time, in seconds since the epoch."""

    source: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    outcome: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    incident_id: int | None = None


@dataclass(frozen=True)
class IncidentQuery:
    """Which incidents match. `since`/`until` bound the time the incident opened. `action` and `outcome` match the
    incidents with at least one alert of that action or outcome (an incident has no action of its own: "which
    incidents had a recovery", "which were re-paged")."""

    status: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    outcome: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first: `total` counts every match (not only this page); `next_cursor` fetches
    the following page, None on the last one."""

    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None

    def to_json(self, key: str) -> dict[str, Any]:
        """The API's answer: the items under `key` ("alerts", "incidents"), the total and the next cursor."""
        return {key: self.items, "total": self.total, "next_cursor": self.next_cursor}


Params = Mapping[str, Sequence[str]]


def alert_query(params: Params) -> AlertQuery:
    """The AlertQuery of request parameters (each name with its values, e.g. `request.args.to_dict(flat=False)`).
    A filter may repeat or hold comma-separated values. Raises RequestError (400) naming the parameter."""
    incident = _one(params, "incident_id")
    if incident is not None and not (incident.isascii() and incident.isdigit() and int(incident) <= MAX_ROW_ID):
        raise RequestError(f"incident_id must be a whole number up to {MAX_ROW_ID}, not {incident[:64]!r}",
                           code="bad_parameter")
    return AlertQuery(source=_values(params, "source"), service=_values(params, "service"),
                      severity=_closed(params, "severity", SEVERITIES), action=_closed(params, "action", ACTIONS),
                      outcome=_closed(params, "outcome", OUTCOMES), state=_closed(params, "state", ALERT_STATES),
                      since=_time(params, "since"), until=_time(params, "until"),
                      incident_id=int(incident) if incident is not None else None)


def incident_query(params: Params) -> IncidentQuery:
    """The IncidentQuery of request parameters (see `alert_query`)."""
    return IncidentQuery(status=_closed(params, "status", INCIDENT_STATUSES), source=_values(params, "source"),
                         service=_values(params, "service"), severity=_closed(params, "severity", SEVERITIES),
                         action=_closed(params, "action", ACTIONS), outcome=_closed(params, "outcome", OUTCOMES),
                         since=_time(params, "since"), until=_time(params, "until"))


def page_limit(params: Params, default: int = DEFAULT_LIMIT) -> int:
    """The `limit` parameter: a whole number, clamped to 1..MAX_LIMIT."""
    text = _one(params, "limit")
    if text is None:
        return default
    try:
        return max(1, min(MAX_LIMIT, int(text)))
    except ValueError:
        raise RequestError("limit must be a whole number", code="bad_parameter") from None


def alert_page(store: StoreBase, query: AlertQuery, cursor: str | None = None,
               limit: int = DEFAULT_LIMIT) -> Page:
    """One page of the stored alerts matching `query`, newest first, after `cursor` (a previous page's
    `next_cursor`; RequestError 400 when it is not one)."""
    conditions = _alert_conditions(query)
    return _page(store, alerts, conditions, cursor, limit, _alert_json)


def incident_page(store: StoreBase, query: IncidentQuery, cursor: str | None = None,
                  limit: int = DEFAULT_LIMIT) -> Page:
    """One page of the incidents matching `query`, newest first, after `cursor` (see `alert_page`)."""
    conditions = _incident_conditions(query)
    return _page(store, incidents, conditions, cursor, limit, _incident_json)


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of the page after the row `last_id`."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues below; RequestError (400) when it is not a cursor this bridge gave."""
    bad = RequestError("cursor is not one this API gave: pass a next_cursor value unchanged, or omit it for the "
                       "first page", code="bad_parameter")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    number = text.removeprefix(_CURSOR_PREFIX)
    if not (text.startswith(_CURSOR_PREFIX) and number.isascii() and number.isdigit() and len(number) <= 19
            and int(number) <= MAX_ROW_ID + 1):
        raise bad
    return int(number)


def parse_time(text: str, name: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (`2026-03-01T12:00:00Z`, with an offset) or of a number of
    epoch seconds; RequestError (400) naming the parameter otherwise."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise RequestError(f"{name} must be an RFC 3339 time or epoch seconds (0 or more), not {text!r}",
                               code="bad_parameter")
        return seconds
    try:
        # RFC 3339 allows a lowercase "t" and "z"; fromisoformat wants them uppercase.
        when = datetime.fromisoformat(text.upper())
    except ValueError:
        raise RequestError(f"{name} must be an RFC 3339 time (2026-03-01T12:00:00Z) or epoch seconds, "
                           f"not {text[:64]!r}", code="bad_parameter") from None
    if when.tzinfo is None:
        # A time without an offset would be read in the server's zone: say so instead of guessing.
        raise RequestError(f"{name} needs a time zone offset (Z or +01:00): {text[:64]!r}", code="bad_parameter")
    return when.timestamp()


def _page(store: StoreBase, table: sa.Table, conditions: list[Any], cursor: str | None, limit: int,
          to_json: Any) -> Page:
    limit = max(1, min(MAX_LIMIT, limit))
    rows_q = sa.select(table).where(*conditions).order_by(table.c.id.desc()).limit(limit + 1)
    if cursor:
        rows_q = rows_q.where(table.c.id < decode_cursor(cursor))
    count_q = sa.select(sa.func.count()).select_from(table).where(*conditions)
    # One read transaction: the total and the page see the same rows.
    with store.engine.connect() as conn:
        rows = conn.execute(rows_q).all()
        total = int(conn.execute(count_q).scalar() or 0)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([to_json(r) for r in rows], total, encode_cursor(rows[-1].id) if more else None)


def _alert_conditions(q: AlertQuery) -> list[Any]:
    c = alerts.c
    out: list[Any] = [*_common(c, q.source, q.service, q.severity), *_time_range(c.received_at, q.since, q.until)]
    if q.action:
        out.append(c.action.in_(q.action))
    if q.outcome:
        out.append(c.outcome.in_(q.outcome))
    if q.state:
        out.append(c.state.in_(q.state))
    if q.incident_id is not None:
        out.append(c.incident_id == q.incident_id)
    return out


def _incident_conditions(q: IncidentQuery) -> list[Any]:
    c = incidents.c
    out: list[Any] = [*_common(c, q.source, q.service, q.severity), *_time_range(c.opened_at, q.since, q.until)]
    if q.status:
        out.append(c.status.in_(q.status))
    if q.action or q.outcome:
        # Through ix_alerts_incident: the incident's own alerts, not a scan of every alert per incident.
        of_alerts = [alerts.c.incident_id == c.id]
        if q.action:
            of_alerts.append(alerts.c.action.in_(q.action))
        if q.outcome:
            of_alerts.append(alerts.c.outcome.in_(q.outcome))
        out.append(sa.exists().where(*of_alerts))
    return out


def _common(c: Any, source: tuple[str, ...], service: tuple[str, ...], severity: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    if source:
        out.append(c.source.in_(source))
    if service:
        out.append(c.service.in_(service))
    if severity:
        named = [s for s in severity if s != "none"]
        either = [c.severity.in_(named)] if named else []
        if "none" in severity:
            either.append(c.severity.is_(None))
        out.append(sa.or_(*either))
    return out


def _time_range(column: Any, since: float | None, until: float | None) -> list[Any]:
    out = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def _values(params: Params, name: str) -> tuple[str, ...]:
    """Every value of a filter: repeated (`?source=a&source=b`) or comma-separated (`?source=a,b`)."""
    out: list[str] = []
    for value in params.get(name, ()):
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(dict.fromkeys(out))


def _closed(params: Params, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A filter over a closed set: values are matched case-insensitively for severities (p1 = P1)."""
    values = tuple(v.upper() if name == "severity" and v.lower() != "none" else v.lower()
                   for v in _values(params, name))
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise RequestError(f"{name} {unknown[0][:64]!r} is not one of: {', '.join(allowed)}", code="bad_parameter")
    return values


def _one(params: Params, name: str) -> str | None:
    values = params.get(name) or ()
    return values[-1] if values else None


def _time(params: Params, name: str) -> float | None:
    text = _one(params, name)
    return parse_time(text, name) if text else None


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
