"""The database misbehaves (RELIABILITY.md, "The database misbehaves"): out of disk (a small tmpfs filled up), and on
PostgreSQL unavailable (the server stopped), a restarted primary
and read-only transactions (`default_transaction_read_only`). Receivers answer 2xx only after a durable write,
else 503 with a JSON error; once the database is back the bridge recovers by itself: new alerts are accepted,
everything accepted is decided and paged, and the worker process runs (or was restarted by `serve`).
Locked longer than the busy timeout: tests/integration/test_locked_database.py (issue 13). A read-only SQLite
file cannot be made so under a running bridge (Linux refuses to remount a filesystem read-only while a file on it
is open for writing, and root ignores file modes): SQLite's SQLITE_READONLY takes the same path as PostgreSQL's
read-only transactions (`bridge.store.engine.unavailable_problem`, tests/unit/store/test_unavailable.py).

The tmpfs needs root (mount): without it these tests skip, and fail under CI=true. The PostgreSQL ones start a
server of their own (scripts/postgres in a directory and on a port of their own), so stopping it disturbs no other
test; without PostgreSQL's binaries they skip, and fail under CI=true.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.faults import Tmpfs, accepted_ids, bridge_for, database_fault, post_all, storm_body
from tests.support.server import REPO, BridgeProcess, free_port

pytestmark = pytest.mark.integration

ALERTS = 40


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Tmpfs]:
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root (CI runs as root)")
    fs = Tmpfs(tmp_path / "disk")
    reason = fs.mount()
    if reason:
        unavailable(reason)
    try:
        yield fs
    finally:
        fs.unmount()


def started(tmp_path: Path, pd: FakePagerDuty, database_url: str) -> tuple[BridgeProcess, list[int]]:
    env = bridge_for(tmp_path, pd, BRIDGE_DATABASE_URL=database_url)
    bridge = BridgeProcess(tmp_path, env).start()
    warm = post_all(bridge.url, [storm_body("warm", i) for i in range(5)])
    assert all(a.accepted for a in warm), [a.error for a in warm]
    return bridge, accepted_ids(warm)


def check(figures: object) -> None:
    from tests.support.faults import DatabaseFaultFigures

    assert isinstance(figures, DatabaseFaultFigures)
    print("\n" + "\n".join(figures.lines()))
    assert not figures.problems, figures.problems[:5]
    assert figures.worker_alive
    assert figures.audit.ok, figures.audit.summary()
    assert figures.after.get("202", 0) >= ALERTS


def test_out_of_disk(tmp_path: Path, pd: FakePagerDuty, disk: Tmpfs) -> None:
    url = f"sqlite:///{disk.path / 'bridge.db'}"
    bridge, warm = started(tmp_path, pd, url)
    filler: list[Path] = []
    try:
        figures = database_fault(bridge, pd, url, "out of disk", break_it=lambda: filler.append(disk.fill()),
                                 repair=lambda: filler[0].unlink(), alerts=ALERTS, accepted_before=warm)
        check(figures)
        assert figures.during.get("503"), f"the full disk refused nothing: {figures.during}"
    finally:
        bridge.kill()


# -- PostgreSQL: a server of the test's own --------------------------------------------------------------------


class OwnPostgres:
    """scripts/postgres in a directory and on a port of its own: stopped and started at will."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its directories are private to root, and the server runs as `postgres`.
        self.dir = Path(tempfile.mkdtemp(prefix="incident-bridge-fault-pg-"))
        self.dir.chmod(0o755)
        self.env = {**os.environ, "BRIDGE_TEST_PG_DIR": str(self.dir / "pg"),
                    "BRIDGE_TEST_PG_PORT": str(free_port())}
        self.url = ""

    def run(self, *args: str) -> str:
        done = subprocess.run([str(REPO / "scripts" / "postgres"), *args], env=self.env, capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/postgres {' '.join(args)} failed: {done.stderr.strip()[-600:]}")
        return done.stdout.strip()

    def start(self) -> str:
        self.url = self.run("start").splitlines()[-1]
        return self.url

    def stop(self) -> None:
        self.run("stop")

    def _pg_ctl(self, *args: str) -> None:
        """pg_ctl as the cluster's owner, with the server's own command line (postmaster.opts): a server started
        again listens on the same port (scripts/postgres would take another when the old one is in TIME_WAIT)."""
        data = Path(self.env["BRIDGE_TEST_PG_DIR"]) / "data"
        postgres, *options = shlex.split((data / "postmaster.opts").read_text())
        pg_ctl = str(Path(postgres).parent / "pg_ctl")
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*owner, pg_ctl, "-D", str(data), "-w", "-t", "60", "-m", "fast", *args,
                        *(["-o", shlex.join(options[2:])] if args[0] == "start" else [])],
                       check=True, capture_output=True, timeout=120)

    def stop_server(self) -> None:
        """Stop the server (fast: every session is cut, as a crash of the primary would)."""
        self._pg_ctl("stop")

    def start_server(self) -> None:
        """Start it again on the same port."""
        self._pg_ctl("start", "-l", str(Path(self.env["BRIDGE_TEST_PG_DIR"]) / "restart.log"))

    def sql(self, statement: str) -> None:
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("the psycopg driver is not installed: pip install -e '.[postgres]'")
    server = OwnPostgres()
    try:
        server.start()
    except RuntimeError as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        try:
            server.stop()
        except RuntimeError:
            pass
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.mark.parametrize("fault", ["unavailable", "restarted primary", "read-only"])
def test_postgres(tmp_path: Path, pd: FakePagerDuty, postgres: OwnPostgres, fault: str) -> None:
    bridge, warm = started(tmp_path, pd, postgres.url)
    actions = {
        "unavailable": (postgres.stop_server, postgres.start_server),
        # Stopped and started at once: every pooled connection of the bridge is dead when the next request comes.
        "restarted primary": (lambda: (postgres.stop_server(), postgres.start_server()), lambda: None),
        "read-only": (lambda: postgres.sql("ALTER SYSTEM SET default_transaction_read_only = on")
                      or postgres.sql("SELECT pg_reload_conf()"),
                      lambda: postgres.sql("ALTER SYSTEM RESET default_transaction_read_only")
                      or postgres.sql("SELECT pg_reload_conf()")),
    }
    break_it, repair = actions[fault]
    try:
        figures = database_fault(bridge, pd, postgres.url, fault, break_it=break_it, repair=repair,
                                 alerts=ALERTS, accepted_before=warm)
        check(figures)
        if fault != "restarted primary":
            assert figures.during.get("503"), f"nothing refused while {fault}: {figures.during}"
    finally:
        bridge.kill()
