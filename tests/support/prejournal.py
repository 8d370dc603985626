"""The database the bridge made before the journal redesign (commit b069dcd^), for the migration tests:
`tests/unit/store/data/prejournal.sql` is its `sqlite3 .dump` (see its header for how it was made)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from bridge.store.migrations import baseline

PREJOURNAL_SQL = Path(__file__).resolve().parents[1] / "unit" / "store" / "data" / "prejournal.sql"


def load_prejournal(url: str) -> None:
    """Make the database at `url` what the bridge before the journal made: the dump itself on SQLite; on
    PostgreSQL that code's tables (the baseline's frozen copy of its metadata, which it ran create_all with) and
    the dump's rows, its sequences moved past them as that code's inserts left them."""
    if url.startswith("sqlite"):
        with sqlite3.connect(sa.make_url(url).database or "") as conn:
            conn.executescript(PREJOURNAL_SQL.read_text(encoding="utf-8"))
        return
    source = sqlite3.connect(":memory:")
    source.executescript(PREJOURNAL_SQL.read_text(encoding="utf-8"))
    source.row_factory = sqlite3.Row
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        baseline.metadata.create_all(conn)
        for table in baseline.metadata.sorted_tables:
            rows = [dict(r) for r in source.execute(f"SELECT * FROM {table.name}")]  # noqa: S608 (our table names)
            for row in rows:
                for column in table.columns:  # SQLite keeps booleans as 0/1
                    if isinstance(column.type, sa.Boolean) and row.get(column.name) is not None:
                        row[column.name] = bool(row[column.name])
            if rows:
                conn.execute(table.insert(), rows)
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                     f"(SELECT max(id) FROM {table.name}))"))
    engine.dispose()
    source.close()
