"""Prometheus Alertmanager on loopback with a webhook receiver that records arrival times."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bench.common import CHILDREN, ensure_tool, free_port, tool_version, wait_http


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 200 and records (arrival time, parsed body) per notification."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notifications: list[tuple[float, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with receiver.lock:
                    receiver.notifications.append((arrived, parsed))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/alertmanager"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def arrivals(self, label: str) -> dict[str, float]:
        """The first arrival time of each value of `label` among the notified alerts."""
        found: dict[str, float] = {}
        with self.lock:
            for arrived, body in self.notifications:
                for alert in (body or {}).get("alerts", []):
                    value = alert.get("labels", {}).get(label)
                    if value is not None and value not in found:
                        found[value] = arrived
        return found


def config(webhook_url: str) -> dict[str, Any]:
    """alertmanager.yml: the storm grouped by alertname (a typical route); alerts labelled bench=latency each
    their own group (group_by: ['...']), both with group_wait 0s, to one webhook receiver."""
    return {
        "route": {
            "receiver": "bench", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "10s",
            "repeat_interval": "1h",
            "routes": [{"matchers": ['bench="latency"'], "receiver": "bench", "group_by": ["..."],
                        "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}],
        },
        "receivers": [{"name": "bench", "webhook_configs": [
            {"url": webhook_url, "send_resolved": False, "max_alerts": 0}]}],
    }


@contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[tuple[str, str]]:
    """Alertmanager (installed with apt when missing, as root) on a free loopback port, clustering off.
    Yields (base URL, version line)."""
    binary = ensure_tool(["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager")
    version = tool_version([binary, "--version"])
    directory = tmp / "alertmanager"
    directory.mkdir(exist_ok=True)
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config(webhook_url), sort_keys=False))
    port = free_port()
    logfile = (directory / "alertmanager.log").open("ab")
    proc = CHILDREN.popen(
        [binary, f"--config.file={directory / 'alertmanager.yml'}", f"--storage.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         f"--web.external-url=http://127.0.0.1:{port}", "--log.level=warn"],
        cwd=directory, stdout=logfile, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc, what="Alertmanager")
        yield f"http://127.0.0.1:{port}", version
    finally:
        CHILDREN.stop(proc)
        logfile.close()
