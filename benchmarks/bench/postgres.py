"""A throwaway PostgreSQL server (scripts/postgres, in a directory of its own) and fresh databases on it."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import CHILDREN, REPO, free_port, log

SCRIPT = REPO / "scripts" / "postgres"


def require_driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise RuntimeError("the psycopg driver is not installed: pip install -e '.[postgres]'") from None


class PostgresServer:
    """`scripts/postgres` with its own data directory and port (never the test suite's cluster, which another
    run may be using). Stopped, and its directory removed, by `stop()` or at exit."""

    def __init__(self) -> None:
        self.env = {**os.environ, "BRIDGE_TEST_PG_DIR": f"/tmp/incident-bridge-bench-pg-{os.getuid()}",
                    "BRIDGE_TEST_PG_PORT": str(free_port())}
        self.url = ""
        self.version = ""

    def start(self) -> str:
        require_driver()
        CHILDREN.on_exit(self.stop)  # registered first: a start that fails halfway is stopped too
        done = subprocess.run([str(SCRIPT)], env=self.env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/postgres failed: {done.stderr.strip()[-800:]}")
        self.url = done.stdout.strip().splitlines()[-1]
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, pool_size=1)
        try:
            with engine.connect() as conn:
                self.version = str(conn.execute(sa.text("SHOW server_version")).scalar()).split(" (")[0]
        finally:
            engine.dispose()
        log(f"PostgreSQL {self.version} at {self.url}")
        return self.url

    def stop(self) -> None:
        if not self.url:
            return
        self.url = ""
        subprocess.run([str(SCRIPT), "stop"], env=self.env, capture_output=True, text=True, timeout=120)
        Path(f"{self.env['BRIDGE_TEST_PG_DIR']}.lock").unlink(missing_ok=True)  # the script leaves its lock file
        log("PostgreSQL stopped")


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, uniquely named database on the server (as tests/support/postgres.py makes them), dropped on exit."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    name = f"bridge_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", pool_size=1, connect_args={"connect_timeout": 10})
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
