"""`AuditStore`: the audit log (who changed the bridge's behaviour: silences, rule reloads, retried or
discarded jobs), written in the transaction of the change it records, and the notices receivers record (SNS
subscriptions to confirm, unsubscribes).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.store.base import StoreBase
from bridge.store.schema import _iso, audit, notices

log = logging.getLogger("bridge.store")


class AuditStore(StoreBase):
    """The audit log and the recorded notices."""

    def _audit(self, conn: Connection, now: float, actor: str, action: str, target: str,
               details: dict[str, Any]) -> None:
        conn.execute(audit.insert().values(at=now, actor=actor[:255], action=action, target=target[:255],
                                           details_json=json.dumps(details, default=str)))
        # The log line carries the same facts; control characters in them are escaped by the log formatter.
        log.info("audit: %s %s %s by %s", action, target, json.dumps(details, default=str), actor)

    def record_audit(self, actor: str, action: str, target: str, details: dict[str, Any], now: float) -> None:
        """Store and log one audit entry (who did what, when)."""
        with self.transaction() as conn:
            self._audit(conn, now, actor, action, target, details)

    def list_audit(self, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        """Audit entries, newest first; `action` filters by exact action or by prefix ending in '.'."""
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if action:
            q = q.where(audit.c.action.startswith(action) if action.endswith(".") else audit.c.action == action)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [{"id": r.id, "at": _iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
                 "details": json.loads(r.details_json)} for r in rows]

    def list_notices(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded notices (SNS subscriptions to confirm, unsubscribes), newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(notices).order_by(notices.c.id.desc()).limit(limit)).all()
        return [{"id": r.id, "source": r.source, "kind": r.kind, "level": r.level, "message": r.message,
                 "details": json.loads(r.details_json), "created_at": _iso(r.created_at)} for r in rows]
