"""The alerts and incidents lists of the console: filtered, newest first, paged by id (a cursor, not an offset, so
a page never repeats or skips rows while alerts arrive).

The store's read views are getting the same paging and filters for the API (`alert_page` / `incident_page`);
when they land, these two functions become calls to them (the console's templates only read `Page`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bridge.errors import RequestError
from bridge.store import Store, alerts, incidents
from bridge.store.views import _alert_json, _incident_json

ALERT_COLUMNS = {"source": alerts.c.source, "service": alerts.c.service, "severity": alerts.c.severity,
                 "action": alerts.c.action, "outcome": alerts.c.outcome}


@dataclass(frozen=True)
class Page:
    """One page of rows, newest first, and the cursor of the next (older) page ("" on the last)."""

    items: list[dict[str, Any]]
    next_cursor: str


def alert_page(store: Store, filters: Mapping[str, str], *, cursor: str = "", limit: int = 50) -> Page:
    """Alerts matching every filter (exact values of source, service, severity, action, outcome)."""
    q = sa.select(alerts).order_by(alerts.c.id.desc()).limit(limit + 1)
    for name, value in filters.items():
        if name not in ALERT_COLUMNS:
            raise RequestError(f"unknown filter {name!r}: use {', '.join(ALERT_COLUMNS)}", code="bad_parameter")
        q = q.where(ALERT_COLUMNS[name] == value)
    before = _cursor(cursor)
    if before:
        q = q.where(alerts.c.id < before)
    with store.engine.connect() as conn:
        rows = [_alert_json(r) for r in conn.execute(q)]
    return _page(rows, limit)


def incident_page(store: Store, *, status: str = "", cursor: str = "", limit: int = 50) -> Page:
    """Incidents, newest first; `status` "open" or "resolved" (empty: both)."""
    if status not in ("", "open", "resolved"):
        raise RequestError(f"status must be open or resolved, not {status[:50]!r}", code="bad_parameter")
    q = sa.select(incidents).order_by(incidents.c.id.desc()).limit(limit + 1)
    if status:
        q = q.where(incidents.c.status == status)
    before = _cursor(cursor)
    if before:
        q = q.where(incidents.c.id < before)
    with store.engine.connect() as conn:
        rows = [_incident_json(r) for r in conn.execute(q)]
    return _page(rows, limit)


def _page(rows: list[dict[str, Any]], limit: int) -> Page:
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1]["id"]) if more and rows else "")


def _cursor(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise RequestError("the page cursor must be a whole number (an id): follow the Older link",
                           code="bad_parameter")
    return int(text)
