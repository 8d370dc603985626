"""Run a real Prometheus Alertmanager on loopback, for end-to-end tests of the Alertmanager receiver.

`AlertmanagerProcess` writes a config with one receiver whose `webhook_configs` are the given targets, starts
the binary on a free 127.0.0.1 port with clustering off (otherwise it listens on 0.0.0.0:9094), and waits for
`/-/ready`. Alerts go in through API v2 (`post_alerts`), exactly as Prometheus sends them.

`CaptureServer` is a stdlib HTTP server that answers 200 and keeps every request: pointed at as a second
webhook target, it shows the exact body and headers Alertmanager sent, so a failure in the bridge can be
reported with the real payload.

The binary comes from the Debian package `prometheus-alertmanager` (`scripts/test` installs it as root).
When it is missing the test skips with the reason, except under `CI=true`, where it fails: CI must never pass
by skipping a service it was supposed to run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.support.server import free_port


def find_binary() -> str | None:
    """The Alertmanager binary: Debian names it `prometheus-alertmanager`, upstream `alertmanager`."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def require_binary() -> str:
    """The binary, or skip the test (fail under `CI=true`) with how to get it."""
    found = find_binary()
    if found:
        return found
    reason = ("Prometheus Alertmanager is not installed (neither 'prometheus-alertmanager' nor 'alertmanager' "
              "is on PATH): apt-get install prometheus-alertmanager, or run ./scripts/test as root")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def rfc3339(moment: dt.datetime) -> str:
    """`2026-01-01T00:00:00.123Z`: the time format of Alertmanager's API v2."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> dt.datetime:
    """The current UTC time (end-to-end tests use real time: Alertmanager does)."""
    return dt.datetime.now(dt.UTC)


def api_alert(labels: Mapping[str, str], annotations: Mapping[str, str], *, starts_at: dt.datetime,
              ends_at: dt.datetime) -> dict[str, Any]:
    """One alert in API v2's `postableAlert` shape (what Prometheus posts to `/api/v2/alerts`)."""
    return {"labels": dict(labels), "annotations": dict(annotations),
            "startsAt": rfc3339(starts_at), "endsAt": rfc3339(ends_at)}


@dataclass(frozen=True)
class CapturedRequest:
    """One request as the capture server saw it."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class _CaptureHandler(BaseHTTPRequestHandler):
    server: _CaptureHttpServer

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.capture.lock:
            self.server.capture.requests.append(CapturedRequest(self.path, headers, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Silent: the record is `capture.requests`."""


class _CaptureHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    capture: CaptureServer


class CaptureServer:
    """Answers 200 to every POST on 127.0.0.1:<free port> and records it. Use as a context manager."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[CapturedRequest] = []
        self._httpd: _CaptureHttpServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CaptureServer:
        httpd = _CaptureHttpServer(("127.0.0.1", 0), _CaptureHandler)
        httpd.capture = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="alertmanager-capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>/capture`."""
        assert self._httpd is not None, "use `with CaptureServer() as capture`"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/capture"

    def bodies(self) -> list[Any]:
        """Every captured body, parsed, in arrival order."""
        with self.lock:
            return [r.json() for r in self.requests]

    def dump(self) -> str:
        """All captured requests, for a failure message (headers included: tests use throwaway tokens)."""
        with self.lock:
            return "\n".join(f"POST {r.path} {json.dumps(r.headers)}\n{r.body.decode(errors='replace')}"
                             for r in self.requests) or "(nothing captured)"


@dataclass(frozen=True)
class WebhookTarget:
    """One entry of the receiver's `webhook_configs`.

    `token`, when set, is presented as `Authorization: Bearer` from a `credentials_file`; with `basic_auth`
    it is the basic-auth `password_file` instead (user name `alertmanager`).
    """

    url: str
    token: str | None = None
    basic_auth: bool = False
    send_resolved: bool = True


@dataclass
class AlertmanagerProcess:
    """A real Alertmanager on 127.0.0.1 with a generated config, its own storage and its log in `tmp`."""

    binary: str
    tmp: Path
    webhooks: Sequence[WebhookTarget]
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "1h"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.dir = self.tmp / f"alertmanager-{time.monotonic_ns()}"
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "alertmanager.log"
        self.config_path = self.dir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        """The alertmanager.yml: one route, one receiver with every webhook target."""
        configs: list[dict[str, Any]] = []
        for index, target in enumerate(self.webhooks):
            entry: dict[str, Any] = {"url": target.url, "send_resolved": target.send_resolved, "max_alerts": 0}
            if target.token is not None:
                # A credentials file, as the README recommends: the token stays out of the config file.
                token_file = self.dir / f"webhook-{index}.token"
                token_file.write_text(target.token)
                token_file.chmod(0o600)
                entry["http_config"] = (
                    {"basic_auth": {"username": "alertmanager", "password_file": str(token_file)}}
                    if target.basic_auth else
                    {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}})
            configs.append(entry)
        return {
            "route": {"receiver": "incident-bridge", "group_by": ["alertname", "service"],
                      "group_wait": self.group_wait, "group_interval": self.group_interval,
                      "repeat_interval": self.repeat_interval},
            "receivers": [{"name": "incident-bridge", "webhook_configs": configs}],
        }

    def start(self, attempts: int = 3) -> AlertmanagerProcess:
        """Start on a free port and wait for `/-/ready`; a lost race for the port is retried."""
        for _ in range(attempts):
            self.port = free_port()
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                [self.binary,
                 f"--config.file={self.config_path}",
                 f"--storage.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address=",  # no gossip listener (it would bind 0.0.0.0:9094)
                 f"--web.external-url=http://127.0.0.1:{self.port}",
                 "--log.level=debug"],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            if self._wait_ready(timeout=20.0):
                return self
            self.stop()
        raise AssertionError(f"Alertmanager did not become ready:\n{self.output()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                if httpx2.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return True
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        return False

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """`POST /api/v2/alerts`, as Prometheus does on every evaluation."""
        response = httpx2.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10.0)
        assert response.status_code == 200, (response.status_code, response.text)

    def alerts(self, **label_filter: str) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts` (active, silenced, inhibited and unprocessed), optionally filtered by labels."""
        response = httpx2.get(f"{self.url}/api/v2/alerts", timeout=10.0)
        assert response.status_code == 200, (response.status_code, response.text)
        return [a for a in response.json()
                if all(a["labels"].get(k) == v for k, v in label_filter.items())]

    def fingerprint(self, **labels: str) -> str:
        """The fingerprint of the one alert whose labels include `labels`."""
        [found] = self.alerts(**labels)
        return str(found["fingerprint"])

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 when there are none)."""
        text = httpx2.get(f"{self.url}/metrics", timeout=10.0).text
        total = 0.0
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(3))
        return total

    def output(self) -> str:
        """Alertmanager's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the process group when it does not exit within 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
