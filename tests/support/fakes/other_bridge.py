"""A loopback fake of "another bridge": a process that already holds an address and answers like a bridge
(`GET /readyz` 200, `POST /webhooks/<source>` 202), recording every request. The tests of `serve --demo` use it to
prove the demo posts nothing to a process it did not start.

`instance` is the per-run nonce it answers in `X-Incident-Bridge-Instance` on /readyz (None: no header, like a
bridge not started by `serve`, or any other program).

Usage::

    with OtherBridge() as other:
        ...                       # run `serve --demo --port {other.port}`
        assert other.posts == []
"""

from __future__ import annotations

from typing import Any

from bridge.web.ops import INSTANCE_HEADER
from tests.support.fakes.pagerduty import Fault, LoopbackServer, RecordedRequest, Reply


class OtherBridge(LoopbackServer):
    """Answers /readyz as a ready bridge and accepts every webhook; records all requests."""

    def __init__(self, *, instance: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance = instance

    @property
    def posts(self) -> list[RecordedRequest]:
        """Every POST it received (a demo alert would be one)."""
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def _api_of(self, path: str) -> str:
        return "bridge"

    def _fault_reply(self, request: RecordedRequest, fault: Fault) -> Reply:
        return Reply(fault.status, fault.body)

    def _handle(self, request: RecordedRequest) -> Reply:
        request.outcome = "accepted"
        if request.method == "GET" and request.path == "/readyz":
            headers = {INSTANCE_HEADER: self.instance} if self.instance is not None else {}
            return Reply(200, {"status": "ready", "ruleset": "0123456789abcdef"}, headers)
        if request.method == "POST" and request.path.startswith("/webhooks/"):
            return Reply(202, {"alerts": [{"id": len(self.requests), "outcome": "pending"}]})
        return Reply(404, {"error": "not_found", "message": request.path})
