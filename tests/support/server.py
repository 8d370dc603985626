"""Run the real `incident-bridge serve` as a child process on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-webhook-token-0123456789"
ADMIN_TOKEN = "test-admin-token-9876543210"
DEFAULT = "<the credential of the path>"


def credential_for(path: str) -> str:
    """The token a well-configured client presents: the admin token on the API and reloads, else the webhook one."""
    return ADMIN_TOKEN if path.startswith(("/api/", "/-/")) else TOKEN
ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, like a real integration key


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessGroup:
    """A bridge process started in its own process group (`start_new_session`)."""

    proc: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: `serve` drains and stops both children; `worker` finishes the batch and the job in
        hand."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: the supervisor and its children die at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class BridgeProcess(ProcessGroup):
    """`python -m bridge serve` in its own process group, with its output captured to a file."""

    def __init__(self, tmp: Path, env: Mapping[str, str], *, port: int | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"bridge-{self.port}-{time.monotonic_ns()}.log"
        self.env = dict(env)
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> BridgeProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait and not self.wait_ready():
            self.kill()
            raise AssertionError(f"bridge did not become ready:\n{self.output()}")
        return self

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                if httpx2.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return True
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, path: str, body: bytes | str, *, token: str | None = DEFAULT,
             headers: Mapping[str, str] | None = None) -> httpx2.Response:
        h = {"Content-Type": "application/json", **(headers or {})}
        if token == DEFAULT:
            token = credential_for(path)
        if token:
            h["Authorization"] = f"Bearer {token}"
        return httpx2.post(f"{self.url}{path}", content=body if isinstance(body, bytes) else body.encode(),
                           headers=h, timeout=10.0)

    def get(self, path: str, token: str | None = DEFAULT) -> httpx2.Response:
        if token == DEFAULT:
            token = credential_for(path)
        h = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.get(f"{self.url}{path}", headers=h, timeout=10.0)

    def wait_decided(self, timeout: float = 60.0) -> None:
        """Wait until the pipeline stage has decided every accepted alert (`GET /api/v1/pipeline`)."""
        def drained() -> bool:
            r = self.get("/api/v1/pipeline")
            return r.status_code == 200 and r.json()["journal"]["undecided"] == 0

        assert wait_for(drained, timeout=timeout), f"alerts still undecided after {timeout}s"



class WorkerProcess(ProcessGroup):
    """`python -m bridge worker` alone (the pipeline stage and the delivery lanes, no web server), in its own
    process group, with its output captured to a file."""

    def __init__(self, tmp: Path, env: Mapping[str, str], *, name: str = "worker") -> None:
        self.log_path = tmp / f"{name}-{time.monotonic_ns()}.log"
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        """Start it and wait until its stage and its delivery lanes run."""
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "worker"], cwd=REPO, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started = ("pipeline stage started", "delivery worker started")
        if not wait_for(lambda: self.proc is not None and (self.proc.poll() is not None
                                                           or all(s in self.output() for s in started)),
                        timeout=timeout) or self.proc.poll() is not None:
            self.kill()
            raise AssertionError(f"the worker did not start:\n{self.output()}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""



def bridge_env(tmp: Path, **overrides: Any) -> dict[str, str]:
    """A minimal environment for a test bridge (no inherited PagerDuty or Datadog settings)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAGERDUTY_", "BRIDGE_", "DD_", "DATADOG_"))}
    env.update({
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp / 'bridge.db'}",
        "BRIDGE_RULES": str(REPO / "rules"),
        "BRIDGE_WEBHOOK_TOKEN": TOKEN,
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "BRIDGE_RETRY_MULTIPLIER": "0.05",
        "BRIDGE_RETRY_MAX": "0.5",
        "BRIDGE_HTTP_TIMEOUT": "2",
        "BRIDGE_LOG_LEVEL": "INFO",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; returns its value or fails with a timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def decided(response: httpx2.Response, timeout: float = 15.0) -> dict[str, Any]:
    """A receiver's JSON answer with each alert's outcome as the pipeline stage decided it.

    The 202 answers once the alert is journaled, with outcome "pending"; the stage decides it moments later.
    This reads each pending alert back from the API until it is decided.
    """
    body = dict(response.json())
    base = f"{response.request.url.scheme}://{response.request.url.netloc.decode()}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    alerts = []
    for item in body.get("alerts") or []:
        if item.get("outcome") == "pending":
            def final(alert_id: int = item["id"]) -> dict[str, Any] | None:
                got = httpx2.get(f"{base}/api/v1/alerts/{alert_id}", headers=headers, timeout=5.0)
                stored = got.json() if got.status_code == 200 else {}
                return stored if stored.get("outcome", "pending") != "pending" else None

            stored = wait_for(final, timeout=timeout)
            assert stored, f"alert {item['id']} was not decided within {timeout}s"
            item = {**item, **{k: stored[k] for k in ("severity", "action", "rule", "dedup_key", "outcome",
                                                      "incident_id")}}
        alerts.append(item)
    body["alerts"] = alerts
    return body
