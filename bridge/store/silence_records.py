"""`SilenceStore`: the stored silences an operator creates and expires (each change audited in its transaction).
The pipeline stage reads the active ones in its batch (`PipelineBatch.silence_records`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from bridge.store.audit_records import AuditStore
from bridge.store.schema import _inserted_id, _iso, silences
from bridge.store.views import _silence_json


class SilenceStore(AuditStore):
    """The silences table."""

    def add_silence(self, spec: dict[str, Any], owner: str, reason: str, ends_at: float, now: float,
                    *, actor: str = "") -> int:
        """Store a silence; returns its id. With `actor`, the audit entry is written in the same transaction."""
        with self.transaction() as conn:
            silence_id = int(_inserted_id(conn.execute(silences.insert().values(
                spec_json=json.dumps(spec, default=str), owner=owner, reason=reason, ends_at=ends_at,
                created_at=now))))
            if actor:
                self._audit(conn, now, actor, "silence.create", str(silence_id),
                            {"owner": owner, "reason": reason, "ends_at": _iso(ends_at),
                             "matchers": spec.get("matchers")})
            return silence_id

    def update_silence_spec(self, silence_id: int, spec: dict[str, Any]) -> None:
        """Rewrite a stored silence's spec (to record its id inside it)."""
        with self.transaction() as conn:
            conn.execute(silences.update().where(silences.c.id == silence_id).values(
                spec_json=json.dumps(spec, default=str)))

    def list_silences(self, include_expired: bool = False, now: float | None = None) -> list[dict[str, Any]]:
        """Stored silences (by default those not yet ended or expired)."""
        q = sa.select(silences).order_by(silences.c.id)
        if not include_expired:
            at = now if now is not None else time.time()
            q = q.where(silences.c.expired_at.is_(None), silences.c.ends_at > at)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [_silence_json(r) for r in rows]

    def expire_silence(self, silence_id: int, now: float, *, actor: str = "") -> bool:
        """End a silence now; False when there is no such active silence. With `actor`, audited in the same
        transaction."""
        with self.transaction() as conn:
            ended = bool(conn.execute(silences.update().where(
                silences.c.id == silence_id, silences.c.expired_at.is_(None)).values(expired_at=now)).rowcount)
            if ended and actor:
                self._audit(conn, now, actor, "silence.expire", str(silence_id), {})
            return ended
