"""`SelfPageStore`: the pages the bridge sends about itself (`bridge.delivery.watchdog`), one row per stalled part.

The row makes "sent once, resolved once" hold across processes and replicas: a process claims the row (a short
lease, in one transaction) before it sends, and records the outcome after. Two watchdogs seeing the same stall at
once: one claims, the other finds the claim and does nothing. A process that dies mid-send leaves a claim that
runs out, and another sends again with the same dedup key (PagerDuty folds a repeated trigger into the same alert).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bridge.store.base import StoreBase
from bridge.store.schema import self_pages


class SelfPageStore(StoreBase):
    """The self_pages table."""

    @property
    def _insert_once(self) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING what, in this database's dialect."""
        if self.is_postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(self_pages).on_conflict_do_nothing().returning(self_pages.c.what)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(self_pages).on_conflict_do_nothing().returning(self_pages.c.what)

    def self_pages(self) -> dict[str, dict[str, Any]]:
        """Every page about the bridge ever sent, by what it is about: state (open, resolved) and times."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self_pages)).all()
        return {r.what: dict(r._mapping) for r in rows}

    def claim_self_page(self, what: str, action: str, now: float, lease_seconds: float, owner: str) -> bool:
        """Take the right to send `action` (trigger, resolve) for `what`'s page; False when there is nothing to do
        (the page is already in that state) or another process holds the claim.

        A trigger needs the page absent or resolved; a resolve needs it open.
        """
        wanted_from = "resolved" if action == "trigger" else "open"
        with self.transaction(serialized=True) as conn:
            query = sa.select(self_pages).where(self_pages.c.what == what)
            if self.is_postgres:
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                if action != "trigger":
                    return False
                # Two replicas inserting the first row at once: the primary key keeps one, the other claims nothing.
                inserted = conn.execute(self._insert_once.values(
                    what=what, state="resolved", claimed_until=now + lease_seconds, claimed_by=owner[:255],
                    detail="")).first()
                return inserted is not None
            if row.state != wanted_from or (row.claimed_until is not None and row.claimed_until > now):
                return False
            conn.execute(self_pages.update().where(self_pages.c.what == what).values(
                claimed_until=now + lease_seconds, claimed_by=owner[:255]))
            return True

    def finish_self_page(self, what: str, action: str, now: float, *, sent: bool, detail: str = "") -> None:
        """Record the claimed send's outcome: the page is open (trigger sent) or resolved (resolve sent); not sent,
        the claim is given back and the state unchanged (the next watchdog round tries again)."""
        values: dict[str, Any] = {"claimed_until": None, "claimed_by": None}
        if sent and action == "trigger":
            values.update(state="open", triggered_at=now, resolved_at=None, detail=detail)
        elif sent:
            values.update(state="resolved", resolved_at=now)
        with self.transaction() as conn:
            conn.execute(self_pages.update().where(self_pages.c.what == what).values(**values))
