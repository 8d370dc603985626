"""Egress trap: every bridge under test runs with HTTP(S)_PROXY pointing here, so any outbound fetch (an SNS
certificate, a SubscribeURL, Google's certificates) is recorded and refused instead of reaching, or hanging on,
the network.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EgressTrap:
    """A loopback "proxy" that records every request (CONNECT included) and answers 403."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.expected = False  # a test that provokes a fetch on purpose sets this
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                trap.requests.append(f"{self.command} {self.path}")
                self.send_response(403, "egress refused by test trap")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            do_CONNECT = do_GET = do_POST = do_HEAD = _refuse

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self) -> dict[str, str]:
        return {"HTTPS_PROXY": self.url, "HTTP_PROXY": self.url, "https_proxy": self.url, "http_proxy": self.url,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
