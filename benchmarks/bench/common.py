"""Progress output, result rows, child processes (always stopped), tool installation, machine facts."""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent
_STARTED = time.monotonic()


def log(message: str) -> None:
    """One progress line on stderr, with the seconds since the run started."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- results ----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of a section: its value, and its target with met/missed when it has one."""

    figure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Section:
    """One section of RESULTS.md: how it was measured (notes), its figures, and its error if it failed."""

    key: str
    title: str
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    extra: list[str] = field(default_factory=list)  # Markdown blocks after the table (comparisons)
    busy_before: float | None = None  # share of the CPUs busy just before the section (nothing of ours ran)

    def figure(self, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        """Record a figure and print it at once."""
        self.rows.append(Row(figure, value, target, met))
        verdict = "" if met is None else ("  [met]" if met else "  [MISSED]")
        suffix = f"  (target {target})" if target else ""
        log(f"({self.key}) {figure}: {value}{suffix}{verdict}")

    def note(self, text: str) -> None:
        """Record how something was measured (also printed)."""
        self.notes.append(text)
        log(f"({self.key}) note: {text}")


def fmt_ms(seconds: float | None) -> str:
    """Seconds as milliseconds, for tables ('-' for None)."""
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def fmt_s(seconds: float | None) -> str:
    """Seconds, for tables ('-' for None)."""
    return "-" if seconds is None else f"{seconds:.1f} s"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank on the sorted values), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


# -- child processes --------------------------------------------------------------------------------------------


class Children:
    """Every child process the run starts, in its own process group, killed at exit whatever happens.

    Sections stop their processes themselves (context managers); this is the safety net for Ctrl-C, SIGTERM and
    exceptions: `kill_all()` runs at interpreter exit and from run.py's `finally`.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        self._cleanups: list[Callable[[], None]] = []
        atexit.register(self.kill_all)

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `cmd` in a new session (its own process group) and track it."""
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(list(cmd), **kwargs)
        self._procs.append(proc)
        return proc

    def track(self, proc: subprocess.Popen[Any]) -> None:
        """Track a process started elsewhere (e.g. by BridgeProcess)."""
        self._procs.append(proc)

    def on_exit(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` in kill_all() (e.g. stopping the PostgreSQL server)."""
        self._cleanups.append(cleanup)

    @staticmethod
    def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`."""
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            Children.kill(proc)

    @staticmethod
    def kill(proc: subprocess.Popen[Any]) -> None:
        """SIGKILL the process group and reap it."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def kill_all(self) -> None:
        """Kill every tracked process still running, then run the registered cleanups (once each)."""
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                args = proc.args if isinstance(proc.args, list | tuple) else [proc.args]
                log(f"stopping leftover process {proc.pid} ({' '.join(map(str, args))[:80]})")
                self.kill(proc)
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # cleanup must go on
                log(f"cleanup failed: {type(exc).__name__}: {exc}")


CHILDREN = Children()


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 30.0,
              what: str = "server") -> None:
    """Wait until GET `url` answers 200; raise with the reason when the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if httpx2.get(url, timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready at {url} within {timeout:.0f} s")


# -- tools ------------------------------------------------------------------------------------------------------


def ensure_tool(names: Sequence[str], package: str) -> str:
    """The path of the first of `names` on PATH; installs the Debian `package` with apt as root when missing."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{names[0]} is not installed: run `apt-get install -y {package}` as root "
                           f"(run.py installs it itself when it runs as root on Debian)")
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL, timeout=900, check=False)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=900, check=True)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"apt-get installed {package} but none of {', '.join(names)} is on PATH")


def tool_version(cmd: Sequence[str]) -> str:
    """The first line a `--version` style command prints (stdout or stderr), or '' when it fails."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


def git_commit() -> str:
    """`git rev-parse --short HEAD`, plus ' (dirty)' when the working tree differs; read-only git commands."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        # --no-optional-locks: status must not refresh (write) the index; another engineer works in this tree.
        status = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain"], cwd=REPO,
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (git failed)"
    return f"{head} (dirty)" if status.strip() else head


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The share of all CPUs busy over `seconds` (from /proc/stat), None where there is no /proc/stat.

    Sampled between sections, when no process of the run is working, it shows other load on the machine (a test
    run of someone else) that would make the figures lower than the code deserves.
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return None
    elapsed = total1 - total0
    return 1.0 - (idle1 - idle0) / elapsed if elapsed > 0 else None


def machine() -> dict[str, str]:
    """Facts about this machine and run for the report's header."""
    return {
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": platform.platform(terse=True),
        "commit": git_commit(),
    }
