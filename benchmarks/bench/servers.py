"""The servers a section runs: the floor app under gunicorn, and the bridge (BridgeProcess) with its fake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import BENCH_DIR, CHILDREN, free_port, log, wait_http
from bench.fakepd import FakePagerDutyProcess
from bench.testsupport import ROUTING_KEY, BridgeProcess, bridge_env

# bridge_env's test settings that are not the bridge's defaults and do not belong in a benchmark of them:
# faster retries and a shorter PagerDuty timeout (they only matter on failures). Removed, so the defaults apply.
NOT_DEFAULTS = ("BRIDGE_RETRY_MULTIPLIER", "BRIDGE_RETRY_MAX", "BRIDGE_HTTP_TIMEOUT")


def serve_defaults() -> str:
    """`serve`'s default --workers and --threads, read from the CLI itself (the notes must not go stale)."""
    try:
        from bridge.cli import default_workers, serve

        defaults = {p.name: p.default for p in serve.params}
        workers = defaults["workers"] or default_workers()  # None: one per CPU, 2 to 4
        return f"gunicorn gthread, {workers} workers x {defaults['threads']} threads"
    except Exception as exc:  # a note, never a reason to fail
        return f"defaults unreadable: {type(exc).__name__}"


@contextmanager
def floor_app(tmp: Path) -> Iterator[str]:
    """The bare Flask app under gunicorn with 2 sync workers on a free loopback port; yields its base URL."""
    port = free_port()
    logfile = (tmp / f"floor-{port}.log").open("wb")
    cmd = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync",
           "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--log-level", "warning",
           "--chdir", str(BENCH_DIR), "bench.floor_app:app"]
    proc = CHILDREN.popen(cmd, cwd=BENCH_DIR, stdout=logfile, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, what="the floor app (gunicorn)")
        yield f"http://127.0.0.1:{port}"
    finally:
        CHILDREN.stop(proc)
        logfile.close()


@contextmanager
def bridge(tmp: Path, *, database_url: str | None = None,
           **overrides: str) -> Iterator[tuple[BridgeProcess, FakePagerDutyProcess, dict[str, str]]]:
    """`python -m bridge serve` with its default flags (BridgeProcess), the environment of bridge_env (minus
    NOT_DEFAULTS) plus `overrides`, against FakePagerDuty in its own process. Yields (bridge, fake, env)."""
    with FakePagerDutyProcess(tmp) as fake:
        env = bridge_env(tmp, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=fake.url,
                         BRIDGE_LOG_LEVEL="WARNING", **overrides)
        for name in NOT_DEFAULTS:
            if name not in overrides:
                env.pop(name, None)
        if database_url:
            env["BRIDGE_DATABASE_URL"] = database_url
        process = BridgeProcess(tmp, env)
        try:
            process.start(wait=False)
            assert process.proc is not None
            CHILDREN.track(process.proc)
            if not process.wait_ready(timeout=60.0):
                raise RuntimeError(f"the bridge did not become ready:\n{process.output()[-2000:]}")
            log(f"bridge ready at {process.url} (log {process.log_path})")
            yield process, fake, env
        finally:
            try:
                process.stop(timeout=20)  # SIGTERM: gunicorn and the delivery worker drain and stop
            except Exception:  # best effort; what is left is killed below
                process.kill()
            if process.proc is not None:
                try:  # the supervisor is gone; a child it failed to stop would still be in its group
                    os.killpg(process.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
