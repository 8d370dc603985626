"""`incident-bridge serve --demo`, run as a user runs it: it never reaches another process, and without a routing key
it shows the whole flow a real run would take in PagerDuty (the event, then the set-up: priority, urgency, the role
note, the responders, the escalation timers; the resolution checklist), with one priority per title and a recovery
reported as a resolve.

The other process is `OtherBridge`, a real HTTP server on loopback that answers /readyz 200 like a bridge and
records every request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.fakes.other_bridge import OtherBridge
from tests.support.server import BridgeProcess, bridge_env, free_port, wait_for

pytestmark = pytest.mark.integration

LABEL = "DRY-RUN (no PAGERDUTY_ROUTING_KEY, nothing sent)"
P0_TITLE = "Checkout: users cannot complete payment"
P2_TITLE = "Checkout: customers with failed orders"


def block(output: str, header: str) -> list[str]:
    """The lines of the printed dry-run block that starts with `header` (its steps are indented; a note's blank
    lines are blank)."""
    lines = output.splitlines()
    start = lines.index(header)
    steps: list[str] = []
    for line in lines[start + 1:]:
        if line and not line.startswith("  "):
            break
        steps.append(line)
    while steps and not steps[-1]:
        steps.pop()
    return steps


def test_the_demo_on_a_taken_port_exits_with_one_line_and_posts_nothing(tmp_path: Path) -> None:
    with OtherBridge() as other:
        port = other.port
        result = subprocess.run([sys.executable, "-m", "bridge", "serve", "--demo", "--host", "127.0.0.1",
                                 "--port", str(port)], env=bridge_env(tmp_path), cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        requests = list(other.requests)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"incident-bridge: cannot listen on 127.0.0.1:{port}") and "(fix: " in lines[0]
    assert "demo:" not in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert requests == []  # not a readiness probe, let alone an alert


# The demo's guard against a foreign answer, with the real supervisor and children: the readiness check reaches a
# process that answers like a bridge but without this run's nonce (here on another port, as no process can listen
# on the bridge's own), aborts the bridge, and nothing is posted anywhere.
FOREIGN = textwrap.dedent("""
    import json, os, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from bridge.config import Settings
    from bridge.errors import ConfigError
    from bridge.server import Supervisor, wait_until_ready

    seen = []

    class Other(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(("GET", self.path))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "ready"}')

        def do_POST(self):
            seen.append(("POST", self.path))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    supervisor = Supervisor(Settings.from_env(os.environ), "127.0.0.1", int(sys.argv[1]))
    supervisor.prepare()

    def demo():
        try:
            wait_until_ready(f"http://127.0.0.1:{other.server_address[1]}", instance=supervisor.instance)
        except ConfigError as exc:
            supervisor.abort(exc)

    threading.Thread(target=demo, daemon=True).start()
    try:
        supervisor.run()
    except ConfigError as exc:
        print(json.dumps({"error": str(exc), "seen": seen, "web": supervisor.web.returncode,
                          "worker": supervisor.worker.returncode}))
        sys.exit(2)
""")


def test_a_foreign_answer_stops_the_bridge_with_one_line_and_nothing_posted(tmp_path: Path) -> None:
    env = bridge_env(tmp_path, BRIDGE_LOG_LEVEL="WARNING")
    result = subprocess.run([sys.executable, "-c", FOREIGN, str(free_port())], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [report] = [json.loads(ln) for ln in result.stdout.splitlines() if ln.startswith("{")]
    assert report["error"].startswith("another process answers at http://127.0.0.1:") and "(fix: " in report["error"]
    assert report["seen"] == [["GET", "/readyz"]]  # asked once, and not a single alert posted
    assert report["web"] is not None and report["worker"] is not None  # both children were stopped


def test_the_demo_shows_the_whole_flow_without_an_account(tmp_path: Path) -> None:
    demo = BridgeProcess(tmp_path, bridge_env(tmp_path), args=("--demo",)).start()
    try:
        p0 = f"{LABEL}: set-up of incident 1, P0 \"{P0_TITLE}\""
        p2 = f"{LABEL}: set-up of incident 2, P2 \"{P2_TITLE}\""
        checklist = f"{LABEL}: resolution checklist of incident 1, P0 \"{P0_TITLE}\""
        wait_for(lambda: all(text in demo.output() for text in ("demo: done", p0, p2, checklist)), timeout=90)
        output = demo.output()
        assert f"demo: replaying 6 example Datadog alerts into {demo.url}" in output

        # The P0's set-up: every step a real run would send through the REST API, in order.
        steps = block(output, p0)
        assert steps[0] == ("  - would set priority \"P1\" (the account's priority for our P0, by "
                            "settings.priority_names) and urgency high")
        assert steps[1] == "  - would add a note:"
        assert "      Role assignment:" in steps
        assert any(s.startswith("      - Incident Coordinator: escalation policy 'Engineering Managers'. ")
                   for s in steps)
        [responders] = [s for s in steps if s.startswith("  - would request responders: ")]
        assert responders.startswith("  - would request responders: Incident Coordinator: escalation policy "
                                     "'Engineering Managers'; Technical Lead: escalation policy 'Senior Developers'")
        assert [s.split(" (")[0] for s in steps if s.startswith("  - escalates at ")] == ["  - escalates at +10m"] * 2

        # The P2 requests nobody, as the README says; its urgency is low.
        assert block(output, p2) == [
            "  - would set urgency low, no priority",
            "  - no responder requests: P2 declares no incident; the page goes to the service's escalation policy "
            "through the Events API"]

        # A recovery is reported as a resolve, without a severity.
        [recovered] = [ln for ln in output.splitlines() if ln.startswith("03-checkout-users-recovered.json: ")]
        [answer] = json.loads(recovered.split(" HTTP 202 ", 1)[1])
        assert answer["action"] == "resolve" and answer["outcome"] == "resolved" and "severity" not in answer

        # One priority per title: the page's summary, the incident, its timeline.
        summaries = [json.loads(ln.split(": ", 1)[1])["summary"] for ln in output.splitlines()
                     if ln.startswith(f"{LABEL}: {{") and '"trigger"' in ln]
        assert f"[P0] {P0_TITLE}" in summaries and all(s.count("[P") == 1 for s in summaries), summaries
        incidents = demo.get("/api/v1/incidents").json()["incidents"]
        assert {i["title"] for i in incidents} >= {P0_TITLE, P2_TITLE}
        assert not any("[P" in i["title"] for i in incidents)

        # The steps are on the incident's timeline too.
        [first] = [i for i in incidents if i["title"] == P0_TITLE]
        timeline = demo.get(f"/api/v1/incidents/{first['dedup_key']}").json()["timeline"]
        dry = [e["description"] for e in timeline if e["kind"] == "dry_run"]
        assert dry[0].startswith("would set priority \"P1\"")
        assert dry[1].startswith("would add a note:\nincident-bridge declared this a P0 incident")
        assert dry[2].startswith("would request responders: Incident Coordinator: ")
        assert any(d.startswith("would add a note:\nincident-bridge: this P0 incident is resolved") for d in dry)
        assert len([e for e in timeline if e["kind"] == "escalation_timer"]) == 2
        assert not any("[P1]" in e["description"] for e in timeline)
    finally:
        demo.kill()
