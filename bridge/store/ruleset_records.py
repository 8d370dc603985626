"""`RulesetStore`: every (re)load attempt of the rules, and the exact files of each successful one, which every
process of every replica then adopts.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from bridge.store.base import StoreBase
from bridge.store.schema import _inserted_id, rulesets


class RulesetStore(StoreBase):
    """The rulesets table."""

    def record_ruleset(self, *, ok: bool, now: float, hash_: str | None = None, error: str | None = None,
                       files: list[tuple[str, str]] | None = None, base_dir: str = "") -> int:
        """Record a (re)load attempt; a successful one carries the exact files every process then adopts."""
        with self.transaction() as conn:
            return int(_inserted_id(conn.execute(rulesets.insert().values(
                hash=hash_, ok=ok, error=error, files_json=json.dumps(files) if files is not None else None,
                base_dir=base_dir, loaded_at=now))))

    def latest_ruleset(self) -> dict[str, Any] | None:
        """The newest successfully loaded ruleset snapshot."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rulesets).where(rulesets.c.ok.is_(True))
                               .order_by(rulesets.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return {"id": row.id, "hash": row.hash, "files": [tuple(f) for f in json.loads(row.files_json)],
                "base_dir": row.base_dir, "loaded_at": row.loaded_at}

    def ruleset_by_hash(self, hash_: str) -> dict[str, Any] | None:
        """The newest successfully loaded snapshot with this hash (the ruleset an alert was decided with), or None
        when no load of it was recorded."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rulesets).where(rulesets.c.ok.is_(True), rulesets.c.hash == hash_)
                               .order_by(rulesets.c.id.desc()).limit(1)).first()
        if row is None or row.files_json is None:
            return None
        return {"id": row.id, "hash": row.hash, "files": [tuple(f) for f in json.loads(row.files_json)],
                "base_dir": row.base_dir, "loaded_at": row.loaded_at}

    def latest_ruleset_id(self) -> int:
        """Id of the newest successful ruleset snapshot (0 when none)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(rulesets.c.id)).where(
                rulesets.c.ok.is_(True))).scalar() or 0)

    def reload_status(self) -> dict[str, Any]:
        """The last reload attempt and the last success, for metrics and the API."""
        with self.engine.connect() as conn:
            last = conn.execute(sa.select(rulesets).order_by(rulesets.c.id.desc()).limit(1)).first()
            ok = conn.execute(sa.select(rulesets).where(rulesets.c.ok.is_(True))
                              .order_by(rulesets.c.id.desc()).limit(1)).first()
        return {
            "last_reload_ok": bool(last.ok) if last else None,
            "last_reload_at": last.loaded_at if last else None,
            "last_error": last.error if last and not last.ok else None,
            "last_success_at": ok.loaded_at if ok else None,
            "hash": ok.hash if ok else None,
        }
