"""scripts/postgres, as scripts/test uses it (issue 18): a test run stops the throwaway PostgreSQL it started, but
never one another run still uses, nor one started by hand.

Each test runs the script on a cluster of its own (BRIDGE_TEST_PG_DIR in /tmp, a free BRIDGE_TEST_PG_PORT), never
the suite's; the holders are `sleep` processes standing in for test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.server import REPO, free_port

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "postgres"


def server_binaries() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb") is not None


class Cluster:
    """scripts/postgres with a directory and a port of its own."""

    def __init__(self) -> None:
        # Directly in /tmp: as root the cluster belongs to the `postgres` user, who cannot enter pytest's tmp_path.
        self.dir = Path(f"/tmp/incident-bridge-pg-test-{uuid.uuid4().hex[:12]}")
        self.env = {**os.environ, "BRIDGE_TEST_PG_DIR": str(self.dir), "BRIDGE_TEST_PG_PORT": str(free_port())}

    def run(self, *args: str | int) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(SCRIPT), *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    def answers(self, url: str) -> bool:
        try:
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def remove(self) -> None:
        subprocess.run([str(SCRIPT), "stop"], env=self.env, capture_output=True, timeout=120)
        Path(f"{self.dir}.lock").unlink(missing_ok=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not server_binaries():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: no PostgreSQL server binaries (initdb, pg_ctl)", pytrace=False)
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    found = Cluster()
    try:
        yield found
    finally:
        found.remove()


@pytest.fixture
def runs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stand-ins for test runs: processes whose pids hold the server."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def new_run(runs: list[subprocess.Popen[bytes]]) -> int:
    proc = subprocess.Popen(["sleep", "600"])
    runs.append(proc)
    return proc.pid


def test_the_run_that_started_it_stops_it_once_no_other_run_holds_it(cluster: Cluster,
                                                                     runs: list[subprocess.Popen[bytes]]) -> None:
    first, second, killed = new_run(runs), new_run(runs), new_run(runs)
    started = cluster.run("acquire", first)
    url = started.stdout.strip()
    assert "starting PostgreSQL" in started.stderr and cluster.answers(url)
    reused = cluster.run("acquire", second)
    assert reused.stdout.strip() == url and "reusing" in reused.stderr and "starting" not in reused.stderr
    cluster.run("acquire", killed)

    cluster.run("release", first)  # the run that started it ends first: two others hold it
    assert cluster.answers(url)
    runs[2].kill()  # a run killed before it could release holds nothing
    runs[2].wait()
    released = cluster.run("release", second)
    assert "stopped" in released.stderr
    assert not cluster.answers(url) and not cluster.dir.exists()


def test_a_server_started_by_hand_is_left_running(cluster: Cluster, runs: list[subprocess.Popen[bytes]]) -> None:
    url = cluster.run("start").stdout.strip()
    run = new_run(runs)
    assert cluster.run("acquire", run).stdout.strip() == url
    left = cluster.run("release", run)
    assert "left running" in left.stderr and cluster.answers(url)
    cluster.run("stop")
    assert not cluster.answers(url) and not cluster.dir.exists()


def test_a_holder_must_be_a_pid(cluster: Cluster) -> None:
    done = subprocess.run([str(SCRIPT), "acquire"], env=cluster.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "usage: scripts/postgres acquire PID" in done.stderr
