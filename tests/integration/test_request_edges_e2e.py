"""End to end, through the real `incident-bridge serve` (gunicorn, the bridge's worker and logger classes): what a
sender controls cannot write the bridge's log, make it fetch, or get an HTML page.

One bridge for the module, with a loopback egress trap as its HTTPS proxy (every outbound fetch is recorded and
refused), SNS certificates from a local directory, every SNS topic allowed, and no BRIDGE_GCP_AUDIENCE.

- gunicorn's own errors (bad request line, 414, 431) answer JSON with the right status (issue #11, item 5);
- a signed SNS notice whose TopicArn holds a newline and a fake `CRITICAL` record, and a request path with an
  encoded newline (gunicorn's access log), each stay inside one escaped log line (item 4);
- an SNS certificate URL with a newline is a 401 before any fetch; a certificate that cannot be fetched is a
  503 with a JSON reason (item 3);
- Pub/Sub without BRIDGE_GCP_AUDIENCE: 503 naming it, and one warning at start (item 2).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.cost_signing import SnsSigner, sns_timestamp
from tests.support.egress import EgressTrap
from tests.support.server import BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

# What a forged record would look like: the bridge's own layout (bridge.logformat.LOG_FORMAT).
FORGED_PREFIX = "2026-01-01 00:00:00,000 CRITICAL"
FORGED = f"{FORGED_PREFIX} 1 bridge.web: FORGED"
SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8", "User-Agent": "Amazon Simple Notification Service Agent"}


@dataclass
class Edges:
    bridge: BridgeProcess
    signer: SnsSigner
    trap: EgressTrap
    tmp: Path


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edges]:
    tmp = tmp_path_factory.mktemp("edges")
    signer = SnsSigner(tmp / "sns-certs")
    trap = EgressTrap()
    env = bridge_env(tmp, BRIDGE_SNS_CERT_DIR=tmp / "sns-certs", BRIDGE_SNS_TOPICS="*", **trap.env())
    bridge = BridgeProcess(tmp, env).start()
    try:
        yield Edges(bridge, signer, trap, tmp)
        assert "Traceback" not in bridge.output(), bridge.output()
    finally:
        bridge.kill()
        trap.close()


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; the status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


HOST = b"Host: 127.0.0.1\r\n"


@pytest.mark.parametrize(("request_bytes", "status", "error"), [
    pytest.param(b"THIS IS NOT HTTP AT ALL\r\n" + HOST + b"\r\n", 400, "bad_request", id="bad-request-line"),
    pytest.param(b"GET /\x01 HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request", id="control-char-in-target"),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "uri_too_long",
                 id="9000-byte-request-line"),
    pytest.param(b"GET /healthz HTTP/1.1\r\n" + HOST + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
                 431, "request_header_fields_too_large", id="200-headers"),
    pytest.param(b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Long: " + b"v" * 9000 + b"\r\n\r\n", 431,
                 "request_header_fields_too_large", id="over-long-header"),
])
def test_gunicorn_errors_answer_json(edges: Edges, request_bytes: bytes, status: int, error: str) -> None:
    got, headers, body = exchange(edges.bridge.port, request_bytes)
    assert got == status, (got, body[:300])
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    answer = json.loads(body)
    assert answer["error"] == error and answer["message"], answer
    assert set(answer) == {"error", "message"}
    # The server keeps serving.
    assert edges.bridge.get("/healthz").status_code == 200


def subscription(signer: SnsSigner, topic: str) -> dict[str, object]:
    """A signed SubscriptionConfirmation for `topic` (its SubscribeURL well-formed, as SNS writes it)."""
    return signer.sign({
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": uuid.uuid4().hex * 4,
        "TopicArn": topic,
        "Message": "You have chosen to subscribe to the topic.\nTo confirm the subscription, visit the SubscribeURL.",
        "SubscribeURL": ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                         "&TopicArn=arn:aws:sns:us-east-1:123456789012:log-test&Token=" + uuid.uuid4().hex),
        "Timestamp": sns_timestamp(),
    }, version="1")


def forged_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(FORGED_PREFIX) or line.startswith("FORGED")]


def test_a_sender_cannot_write_a_log_line(edges: Edges) -> None:
    bridge = edges.bridge
    # 1. A signed SNS subscription notice, logged as a warning, whose TopicArn carries a newline and a record.
    topic = f"arn:aws:sns:us-east-1:123456789012:log-test\n{FORGED} via-notice"
    r = bridge.post("/webhooks/aws-sns", json.dumps(subscription(edges.signer, topic)), token=None,
                    headers=SNS_HEADERS)
    assert r.status_code == 200, r.text
    assert [n["kind"] for n in r.json()["notices"]] == ["subscription_pending"]
    # 2. A request path with an encoded CR LF: gunicorn's access log prints the decoded path.
    path = "/healthz" + quote(f"\r\n{FORGED} via-access-log")
    status, _, _ = exchange(bridge.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                            .encode())
    assert status == 404

    def both_logged() -> str | None:
        out = bridge.output()
        return out if "via-access-log" in out and "via-notice" in out else None

    output = wait_for(both_logged)
    assert forged_lines(output) == [], output
    carried = [line for line in output.splitlines() if "FORGED" in line]
    notice = [line for line in carried if "via-notice" in line]
    access = [line for line in carried if "via-access-log" in line]
    assert len(notice) == 1 and f"log-test\\n{FORGED} via-notice" in notice[0], carried
    assert " WARNING " in notice[0] and "subscription_pending" in notice[0]
    assert len(access) == 1 and f"\\r\\n{FORGED} via-access-log" in access[0], carried


def test_sns_certificate_url_with_a_newline_is_401_before_any_fetch(edges: Edges) -> None:
    requests_before = list(edges.trap.requests)
    envelope = edges.signer.notification("{}", topic="arn:aws:sns:us-east-1:123456789012:cost")
    envelope["SigningCertURL"] = f"{envelope['SigningCertURL']}\n{FORGED} via-cert-url"
    r = edges.bridge.post("/webhooks/aws-sns", json.dumps(envelope), token=None, headers=SNS_HEADERS)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "sns_bad_url"
    assert edges.trap.requests == requests_before  # nothing was fetched
    assert forged_lines(edges.bridge.output()) == []


def test_sns_certificate_that_cannot_be_fetched_is_503_with_a_reason(edges: Edges) -> None:
    # Signed with a key whose certificate is not in BRIDGE_SNS_CERT_DIR: the bridge fetches it, through the
    # trap, which refuses. The envelope may be genuine, so SNS must retry: 503, never 401 or 500.
    stranger = SnsSigner(edges.tmp / "elsewhere", file_name="SimpleNotificationService-0123456789abcdef.pem")
    envelope = stranger.notification("{}", topic="arn:aws:sns:us-east-1:123456789012:cost")
    r = edges.bridge.post("/webhooks/aws-sns", json.dumps(envelope), token=None, headers=SNS_HEADERS)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == "sns_certificate_unavailable"
    assert envelope["SigningCertURL"] in body["message"]
    assert "CONNECT sns.us-east-1.amazonaws.com:443" in edges.trap.requests


def test_gcp_pubsub_without_audience_is_503_and_warned_once_at_start(edges: Edges) -> None:
    r = edges.bridge.post("/webhooks/gcp-pubsub", json.dumps({"message": {"data": "e30="}}), token="any.jwt.here")
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "gcp_audience_not_configured"
    assert "BRIDGE_GCP_AUDIENCE" in r.json()["message"]
    warnings = [line for line in edges.bridge.output().splitlines()
                if "WARNING" in line and "gcp-pubsub answers 503" in line]
    assert len(warnings) == 1, warnings
    assert "BRIDGE_GCP_AUDIENCE is not set" in warnings[0]


def test_no_gunicorn_control_socket_shared_by_every_bridge_of_a_user(edges: Edges) -> None:
    # gunicorn 25+ would listen on ~/.gunicorn/gunicorn.ctl, one path for every bridge the user runs.
    assert edges.bridge.get("/healthz").status_code == 200
    assert "control socket" not in edges.bridge.output().lower(), edges.bridge.output()
