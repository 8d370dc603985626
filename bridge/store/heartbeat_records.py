"""`HeartbeatStore`: the `heartbeats` table (when each heartbeat is watched since, and its last beat), and the open
incidents of missed heartbeats. The pipeline stage records beats in its batch (`record_beats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bridge.pipeline.heartbeats import HeartbeatRecord
from bridge.rules.model import HEARTBEAT_KEY_PREFIX
from bridge.store.base import StoreBase
from bridge.store.schema import OPEN, heartbeats, incidents


def _insert_missing(conn: Connection) -> Any:
    """INSERT ... ON CONFLICT (name) DO NOTHING, in the connection's dialect: two replicas (or the stage and the
    watch) may start watching one heartbeat at once."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(heartbeats).on_conflict_do_nothing(index_elements=["name"])


def record_beats(conn: Connection, names: Sequence[str], at: float, alert_id: int) -> None:
    """Record a beat of each named heartbeat at `at` (a later beat already recorded is kept: batches of two
    replicas may commit out of receipt order)."""
    for name in names:
        conn.execute(_insert_missing(conn).values(name=name, watched_since=at))
        conn.execute(heartbeats.update().where(
            heartbeats.c.name == name,
            sa.or_(heartbeats.c.last_seen_at.is_(None), heartbeats.c.last_seen_at < at),
        ).values(last_seen_at=at, last_alert_id=alert_id))


def _record(row: Any) -> HeartbeatRecord:
    return HeartbeatRecord(row.name, row.watched_since, row.last_seen_at, row.last_alert_id)


class HeartbeatStore(StoreBase):
    """The heartbeats table."""

    def watch_heartbeats(self, names: Sequence[str], now: float) -> dict[str, HeartbeatRecord]:
        """Start watching the named heartbeats not watched yet (from `now`), forget the others (a heartbeat removed
        from the rules and added again later starts afresh); returns every named heartbeat's record."""
        wanted = sorted(set(names))
        with self.engine.connect() as conn:
            rows = {r.name: r for r in conn.execute(sa.select(heartbeats)).all()}
        if set(rows) != set(wanted):  # write only when the rules' heartbeats changed
            with self.transaction() as conn:
                for name in wanted:
                    if name not in rows:
                        conn.execute(_insert_missing(conn).values(name=name, watched_since=now))
                gone = [name for name in rows if name not in wanted]
                if gone:
                    conn.execute(heartbeats.delete().where(heartbeats.c.name.in_(gone)))
                rows = {r.name: r for r in conn.execute(sa.select(heartbeats)).all()}
        return {name: _record(rows[name]) for name in wanted if name in rows}

    def heartbeat_records(self) -> dict[str, HeartbeatRecord]:
        """Every stored heartbeat record, by name (read only: the API)."""
        with self.engine.connect() as conn:
            return {r.name: _record(r) for r in conn.execute(sa.select(heartbeats)).all()}

    def open_heartbeat_incidents(self) -> dict[str, int]:
        """The open incidents of missed heartbeats: heartbeat name -> incident id (the newest, should there be
        several)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(incidents.c.id, incidents.c.dedup_key).where(
                incidents.c.status == OPEN, incidents.c.dedup_key.startswith(HEARTBEAT_KEY_PREFIX, autoescape=True),
            ).order_by(incidents.c.id)).all()
        return {row.dedup_key.removeprefix(HEARTBEAT_KEY_PREFIX): int(row.id) for row in rows}
