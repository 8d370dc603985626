"""`Store.open_existing`, the read-only commands' way in: it reads the bridge's database and creates nothing, and
where there is no bridge database it says so in one line naming the setting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.store import NoDatabase, Store
from bridge.store.engine import SchemaBehind
from tests.support.prejournal import PREJOURNAL_SQL


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_no_file_no_database_and_nothing_created(tmp_path: Path) -> None:
    with pytest.raises(NoDatabase) as missing:
        Store.open_existing(f"sqlite:///{tmp_path / 'incident-bridge.db'}")
    assert str(missing.value) == (f"no database at {tmp_path / 'incident-bridge.db'} (BRIDGE_DATABASE_URL); start "
                                  "the bridge first or point BRIDGE_DATABASE_URL at its database")
    assert files(tmp_path) == []  # no database, no -wal/-shm, no writer lock file


def test_the_setting_the_url_came_from_is_named(tmp_path: Path) -> None:
    with pytest.raises(NoDatabase, match=r"\(--replay\); start the bridge first or point --replay at its"):
        Store.open_existing(f"sqlite:///{tmp_path / 'typo.db'}", setting="--replay")


def test_a_file_without_the_bridge_tables_is_not_its_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (id INTEGER)").connection.close()
    with pytest.raises(NoDatabase) as wrong:
        Store.open_existing(f"sqlite:///{other}")
    assert str(wrong.value) == (f"no incident-bridge database at {other} (BRIDGE_DATABASE_URL): it has no "
                                "incident-bridge tables; start the bridge first or point BRIDGE_DATABASE_URL at its "
                                "database")
    with sqlite3.connect(other) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]


def test_an_in_memory_database_has_nothing_to_read() -> None:
    with pytest.raises(NoDatabase, match="no database at sqlite:// "):
        Store.open_existing("sqlite://")


def test_an_older_database_is_read_only_after_db_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # as the bridge from before the journal left it
        conn.executescript(PREJOURNAL_SQL.read_text(encoding="utf-8"))
    with pytest.raises(SchemaBehind) as older:
        Store.open_existing(f"sqlite:///{path}")
    assert not isinstance(older.value, NoDatabase)
    assert "has schema revision 0001 (recognised from its tables: made before migrations), older than" in \
        str(older.value)
    assert "run `incident-bridge db upgrade`" in str(older.value)
    with sqlite3.connect(path) as conn:  # still as it was: upgrading is a write, `db upgrade` does it
        assert "journaled_at" not in [r[1] for r in conn.execute("PRAGMA table_info(alerts)")]
        assert "alembic_version" not in [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]


def test_an_existing_database_is_read(store: Store, tmp_path: Path) -> None:
    store.record_audit("cli:test", "rules.reload", "rules", {}, 1.0)
    reader = Store.open_existing(str(store.engine.url))
    assert [a["actor"] for a in reader.list_audit()] == ["cli:test"]
    assert reader.list_incidents() == []
