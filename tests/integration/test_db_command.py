"""`incident-bridge db current` and `db upgrade`, and `serve`/`worker` against a schema behind or ahead of them, through
the real command line (`python -m bridge ...`).

- `db current` prints the revision and whether it is at head: exit 0 at head, 1 behind (or no database yet), 2 ahead.
  It never creates a database.
- `db upgrade` prints from -> to and is idempotent; a database made before migrations is recognised.
- `serve` and `worker` refuse a schema behind (with a database named by BRIDGE_DATABASE_URL) or ahead: one line on
  stderr, exit 2, nothing changed. The embedded default (no BRIDGE_DATABASE_URL) upgrades itself at start.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store.migrations import head
from tests.support.postgres import fresh_database
from tests.support.prejournal import load_prejournal
from tests.support.server import bridge_env, free_port, wait_for

pytestmark = pytest.mark.integration

HEAD = head()
SERVE = ["serve", "--host", "127.0.0.1", "--port", "{port}"]


def bridge(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    args = [a.replace("{port}", str(free_port())) for a in args]
    return subprocess.run([sys.executable, "-m", "bridge", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed (exit 2) with one stderr line and no traceback; returns that line."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("incident-bridge: ") and "(fix: " in lines[0], lines[0]
    return lines[0]


def revision_of(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone():
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A database made by the bridge before the journal redesign (tests/unit/store/data/prejournal.sql)."""
    path = tmp_path / "old.db"
    load_prejournal(f"sqlite:///{path}")
    return path


@pytest.fixture
def env(tmp_path: Path, old_db: Path) -> dict[str, str]:
    return bridge_env(tmp_path, BRIDGE_DATABASE_URL=f"sqlite:///{old_db}")


def test_db_current_and_upgrade_on_a_database_from_before_migrations(tmp_path: Path, old_db: Path,
                                                                     env: dict[str, str]) -> None:
    current = bridge(["db", "current"], env, tmp_path)
    assert (current.returncode, current.stdout) == (1, "0001 (recognised from its tables: made before migrations) "
                                                       f"(behind: head is {HEAD}; run `incident-bridge db upgrade`)\n")
    upgraded = bridge(["db", "upgrade"], env, tmp_path)
    assert (upgraded.returncode, upgraded.stdout, upgraded.stderr) == (
        0, f"{old_db}: 0001 (recognised from its tables: made before migrations) -> {HEAD}\n", "")
    again = bridge(["db", "upgrade"], env, tmp_path)
    assert (again.returncode, again.stdout) == (0, f"{old_db}: already at {HEAD} (head)\n")
    current = bridge(["db", "current"], env, tmp_path)
    assert (current.returncode, current.stdout) == (0, f"{HEAD} (head)\n")
    listed = bridge(["incidents", "--json"], env, tmp_path)  # today's commands read the upgraded data
    assert listed.returncode == 0 and "datadog:cycle:0a6e2b9d4c1f48a3b7e5d2c9f8a1b6e4" in listed.stdout


def test_db_current_creates_nothing_and_db_upgrade_creates_at_head(tmp_path: Path) -> None:
    env = bridge_env(tmp_path, BRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}")
    current = bridge(["db", "current"], env, tmp_path)
    assert current.returncode == 1 and current.stdout.startswith(f"none (no database at {tmp_path / 'new.db'};")
    assert not (tmp_path / "new.db").exists()
    created = bridge(["db", "upgrade"], env, tmp_path)
    assert (created.returncode, created.stdout) == (0, f"{tmp_path / 'new.db'}: none -> {HEAD} (created)\n")
    assert revision_of(tmp_path / "new.db") == f"{HEAD}"


@pytest.mark.parametrize("command", [SERVE, ["worker"]], ids=["serve", "worker"])
def test_serve_and_worker_refuse_a_schema_behind(tmp_path: Path, old_db: Path, env: dict[str, str],
                                                 command: list[str]) -> None:
    line = one_line_error(bridge(command, env, tmp_path))
    assert f"the database at {old_db} (BRIDGE_DATABASE_URL) has schema revision 0001" in line
    assert "run `incident-bridge db upgrade` with the same BRIDGE_DATABASE_URL" in line
    assert revision_of(old_db) is None  # left as it was


@pytest.mark.parametrize("command", [SERVE, ["worker"], ["db", "upgrade"]], ids=["serve", "worker", "db_upgrade"])
def test_a_schema_ahead_is_refused(tmp_path: Path, old_db: Path, env: dict[str, str], command: list[str]) -> None:
    assert bridge(["db", "upgrade"], env, tmp_path).returncode == 0
    with sqlite3.connect(old_db) as conn:  # as a newer bridge's upgrade leaves it
        conn.execute("UPDATE alembic_version SET version_num = '0042'")
    line = one_line_error(bridge(command, env, tmp_path))
    assert f"has schema revision 0042, newer than this incident-bridge knows (its newest is {HEAD})" in line
    current = bridge(["db", "current"], env, tmp_path)
    assert current.returncode == 2
    assert current.stdout.startswith(f"0042 (ahead: this incident-bridge knows up to {HEAD}")


def test_the_embedded_default_upgrades_itself_at_start(tmp_path: Path, old_db: Path) -> None:
    env = bridge_env(tmp_path)
    del env["BRIDGE_DATABASE_URL"]  # the embedded default: incident-bridge.db in the working directory
    old_db.rename(tmp_path / "incident-bridge.db")
    worker = subprocess.Popen([sys.executable, "-m", "bridge", "worker"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: revision_of(tmp_path / "incident-bridge.db") == f"{HEAD}", timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=30)
    assert f"database upgraded: schema revision 0001 -> {HEAD}" in err
    assert "Traceback" not in err


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def test_db_upgrade_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    load_prejournal(pg_url)
    env = bridge_env(tmp_path, BRIDGE_DATABASE_URL=pg_url)
    assert bridge(["db", "current"], env, tmp_path).returncode == 1
    one_line_error(bridge(["worker"], env, tmp_path))
    upgraded = bridge(["db", "upgrade"], env, tmp_path)
    assert upgraded.returncode == 0 and upgraded.stdout.endswith(
        f": 0001 (recognised from its tables: made before migrations) -> {HEAD}\n"), upgraded.stdout + upgraded.stderr
    current = bridge(["db", "current"], env, tmp_path)
    assert (current.returncode, current.stdout) == (0, f"{HEAD} (head)\n")
