"""`incident-bridge notify test --events`: a labelled test trigger through the routing key, with the client real
pages use, then its resolve; or, when anything is wrong, a non-zero exit with one line saying why.

The real command line against the fake PagerDuty on loopback (over TLS, trusted through BRIDGE_PAGERDUTY_CA_BUNDLE,
as a TLS-inspecting proxy would be), which checks every event against PagerDuty's published schema.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import REPO, ROUTING_KEY, bridge_env, free_port

pytestmark = pytest.mark.integration

SERVICE = "PSVC001"
UNKNOWN_KEY = "f" * 32  # of the documented form, but no integration of the account has it


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    # Only ROUTING_KEY is an integration of the account: PagerDuty answers any other "Invalid routing key".
    with FakePagerDuty(tls=True, routing_keys={ROUTING_KEY: SERVICE}) as fake:
        yield fake  # a refused key is an invalid request to the fake: the success test asserts there is none


def env_for(tmp: Path, pd: FakePagerDuty, **overrides: str) -> dict[str, str]:
    settings = {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_EVENTS_URL": pd.url,
                "BRIDGE_PAGERDUTY_CA_BUNDLE": pd.ca_file or ""}
    return bridge_env(tmp, **{**settings, **overrides})


def notify_test(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", "notify", "test", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_a_labelled_trigger_goes_through_the_routing_key_and_is_resolved(tmp_path: Path,
                                                                         pd: FakePagerDuty) -> None:
    done = notify_test(env_for(tmp_path, pd), "--events")
    assert done.returncode == 0, done.stderr
    trigger, resolve = pd.events
    dedup_key = trigger.dedup_key
    assert dedup_key is not None and dedup_key.startswith("incident-bridge:test:events-")
    assert (trigger.event_action, resolve.event_action, resolve.dedup_key) == ("trigger", "resolve", dedup_key)
    assert trigger.routing_key == resolve.routing_key == ROUTING_KEY
    payload = trigger.body["payload"]
    assert payload["summary"] == "[TEST] incident-bridge routing key test - safe to ignore"
    assert payload["severity"] == "info" and payload["custom_details"]["test"] is True
    assert "no action needed" in payload["custom_details"]["purpose"]
    # PagerDuty opened the incident on the key's service, titled and keyed as a test, and resolved it.
    (incident,) = pd.incidents_for(dedup_key)
    assert incident.title.startswith("[TEST] ") and incident.service_id == SERVICE
    assert incident.status == "resolved"
    assert done.stdout.splitlines() == [
        f"test trigger accepted by PagerDuty at {pd.url} (dedup key {dedup_key})",
        f"resolved the test alert {dedup_key}: PAGERDUTY_ROUTING_KEY works",
    ]
    assert ROUTING_KEY not in done.stdout + done.stderr
    pd.assert_no_invalid_requests()


def refused_port(tmp: Path, pd: FakePagerDuty) -> dict[str, str]:
    return env_for(tmp, pd, PAGERDUTY_EVENTS_URL=f"https://127.0.0.1:{free_port()}")


# (id, the environment from (tmp, pd), a fault to inject, texts the one line says, whether a request reached the fake)
FAILURES: list[tuple[str, Callable[[Path, FakePagerDuty], dict[str, str]], Callable[[FakePagerDuty], None],
                     tuple[str, ...], bool]] = [
    ("unknown_key", lambda t, pd: env_for(t, pd, PAGERDUTY_ROUTING_KEY=UNKNOWN_KEY), lambda pd: None,
     ("answered 400", "Invalid routing key", "[rejected]", "set PAGERDUTY_ROUTING_KEY to the Integration Key"), True),
    ("key_of_the_wrong_form", lambda t, pd: env_for(t, pd, PAGERDUTY_ROUTING_KEY="wrongkey"), lambda pd: None,
     ("not sent", "PAGERDUTY_ROUTING_KEY is 8 characters long", "has 32", "(fix: "), False),
    ("no_routing_key", lambda t, pd: env_for(t, pd, PAGERDUTY_ROUTING_KEY=""), lambda pd: None,
     ("not sent", "PAGERDUTY_ROUTING_KEY is not set", "Integration Key"), False),
    ("no_scheme", lambda t, pd: env_for(t, pd, PAGERDUTY_EVENTS_URL=pd.url.removeprefix("https://")),
     lambda pd: None, ("PAGERDUTY_EVENTS_URL=127.0.0.1:", "has no scheme", "https://"), False),
    ("untrusted_certificate", lambda t, pd: env_for(t, pd, BRIDGE_PAGERDUTY_CA_BUNDLE=""), lambda pd: None,
     ("TLS certificate verification failed for 127.0.0.1:", "self-signed certificate",
      "set BRIDGE_PAGERDUTY_CA_BUNDLE to its CA file", "[tls]"), False),
    ("unreadable_ca_bundle", lambda t, pd: env_for(t, pd, BRIDGE_PAGERDUTY_CA_BUNDLE=str(t / "nope.pem")),
     lambda pd: None, ("BRIDGE_PAGERDUTY_CA_BUNDLE=", "does not exist"), False),
    ("connection_refused", refused_port, lambda pd: None,
     ("unreachable at 127.0.0.1:", "Connection refused", "[network]", "check PAGERDUTY_EVENTS_URL"), False),
    ("timeout", lambda t, pd: env_for(t, pd, BRIDGE_HTTP_TIMEOUT="0.5"), lambda pd: pd.delay(3.0, api="events"),
     ("timed out at 127.0.0.1:", "[timeout]", "BRIDGE_HTTP_TIMEOUT"), True),
    ("rate_limited", env_for, lambda pd: pd.fail(429, api="events"),
     ("answered 429", "[rate_limited]", "try again in a minute"), True),
    ("server_error", env_for, lambda pd: pd.fail(503, api="events"),
     ("answered 503", "[server_error]", "try again shortly"), True),
]


@pytest.mark.parametrize(("make_env", "fault", "expected", "reached"), [c[1:] for c in FAILURES],
                         ids=[c[0] for c in FAILURES])
def test_a_failed_routing_key_test_is_one_line_saying_why(
        tmp_path: Path, pd: FakePagerDuty, make_env: Callable[[Path, FakePagerDuty], dict[str, str]],
        fault: Callable[[FakePagerDuty], None], expected: tuple[str, ...], reached: bool) -> None:
    env = make_env(tmp_path, pd)
    fault(pd)
    done = notify_test(env, "--events")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and done.stdout == ""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    (line,) = lines
    assert line.startswith("Error: routing key test "), line
    for text in expected:
        assert text in line, line
    assert bool(pd.requests) == reached
    assert pd.events == []  # nothing was ingested: no test alert is left open
    for key in (ROUTING_KEY, UNKNOWN_KEY, "wrongkey"):
        assert key not in output


def test_notify_test_asks_for_what_to_test(tmp_path: Path, pd: FakePagerDuty) -> None:
    done = notify_test(env_for(tmp_path, pd))
    assert done.returncode == 2 and "--events" in done.stderr and "--role" in done.stderr
    assert pd.requests == []
