"""`bridge.server` in process: the port `serve` binds and holds from its check on, the readiness check that knows
this run's bridge from any other process (so `serve --demo` posts only to itself), and what `replay` prints of
each alert. The other process is a real HTTP server on loopback (`tests.support.fakes.other_bridge`)."""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.server import Supervisor, alert_summary, bind_port, local_url, wait_until_ready
from tests.support.fakes.other_bridge import OtherBridge
from tests.support.server import REPO

INSTANCE = "this-run-0123456789"

SUMMARY_CASES = [
    ("trigger_decided",
     {"id": 1, "severity": "P0", "action": "page", "outcome": "pending", "rule": "r", "dedup_key": "k"},
     {"action": "page", "outcome": "opened"},
     {"severity": "P0", "action": "page", "outcome": "opened", "rule": "r", "dedup_key": "k"}),
    # A P0's recovery measures as P3: printed beside the resolve, that read as a new P3.
    ("recovery_is_a_resolve_without_severity",
     {"id": 2, "severity": "P3", "action": "resolve", "outcome": "pending", "rule": "r", "dedup_key": "k"},
     {"action": "resolve", "outcome": "resolved"},
     {"action": "resolve", "outcome": "resolved", "rule": "r", "dedup_key": "k"}),
    ("recovery_undecided_still_without_severity",
     {"id": 3, "severity": "P3", "action": "resolve", "outcome": "pending", "rule": "r", "dedup_key": "k"},
     {},
     {"action": "resolve", "outcome": "pending", "rule": "r", "dedup_key": "k"}),
    ("recorded_keeps_its_null_severity",
     {"id": 4, "severity": None, "action": "record", "outcome": "recorded", "rule": "r", "dedup_key": "k"},
     {},
     {"severity": None, "action": "record", "outcome": "recorded", "rule": "r", "dedup_key": "k"}),
]


@pytest.mark.parametrize(("accepted", "decided", "printed"), [c[1:] for c in SUMMARY_CASES],
                         ids=[c[0] for c in SUMMARY_CASES])
def test_alert_summary(accepted: dict[str, Any], decided: dict[str, Any], printed: dict[str, Any]) -> None:
    assert alert_summary(accepted, decided) == printed


URL_CASES = [
    ("ipv4", ("127.0.0.1", 8080), "http://127.0.0.1:8080"),
    ("ipv4_wildcard_through_loopback", ("0.0.0.0", 8080), "http://127.0.0.1:8080"),
    ("ipv6", ("::1", 8080, 0, 0), "http://[::1]:8080"),
    ("ipv6_wildcard_through_loopback", ("::", 8080, 0, 0), "http://[::1]:8080"),
    ("other_address", ("192.0.2.7", 9000), "http://192.0.2.7:9000"),
]


@pytest.mark.parametrize(("address", "url"), [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES])
def test_local_url(address: tuple[Any, ...], url: str) -> None:
    assert local_url(address) == url


@pytest.mark.parametrize("instance", [None, "another-run-nonce"], ids=["no_nonce", "another_nonce"])
def test_an_answer_without_this_runs_nonce_is_another_process(instance: str | None) -> None:
    with OtherBridge(instance=instance) as other:
        url = other.url
        started = time.monotonic()
        with pytest.raises(ConfigError) as raised:
            wait_until_ready(url, timeout=10, instance=INSTANCE)
        assert time.monotonic() - started < 5  # at its first answer, not after the timeout
        assert [r.path for r in other.requests] == ["/readyz"]  # asked once, and nothing posted
    assert f"another process answers at {url}" in str(raised.value)
    assert "--port" in str(raised.value) and "\n" not in str(raised.value)
    assert INSTANCE not in str(raised.value)


def test_the_bridge_answering_with_this_runs_nonce_is_ready() -> None:
    with OtherBridge(instance=INSTANCE) as ours:
        assert wait_until_ready(ours.url, timeout=10, instance=INSTANCE) is True


def test_nothing_listening_is_not_ready_within_the_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert wait_until_ready(f"http://127.0.0.1:{port}", timeout=0.5, instance=INSTANCE) is False


@pytest.mark.parametrize("reuse_address", [False, True], ids=["plain", "so_reuseaddr"])
def test_a_bound_port_is_held_against_any_other_listener(reuse_address: bool) -> None:
    held = bind_port("127.0.0.1", 0)
    try:
        port = held.getsockname()[1]
        with socket.socket() as other:
            if reuse_address:  # as gunicorn and most servers set it
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError) as refused:
                other.bind(("127.0.0.1", port))
                other.listen()
            assert refused.value.errno == errno.EADDRINUSE
    finally:
        held.close()


def test_a_port_in_use_is_one_line_naming_it() -> None:
    with OtherBridge() as other:
        port = other.port
        with pytest.raises(ConfigError) as raised:
            bind_port("127.0.0.1", port)
    message = str(raised.value)
    assert f"cannot listen on 127.0.0.1:{port}" in message and "another process listens there" in message
    assert "(fix: " in message and "\n" not in message


def test_prepare_holds_the_port_from_its_check_on(tmp_path: Path) -> None:
    """The case of another server started between the check and gunicorn's bind: there is no such moment, the
    check is the bind. After `prepare`, no other process can listen on the port; `close` releases it."""
    settings = Settings.from_env({"BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
                                  "BRIDGE_RULES": str(REPO / "rules"), "BRIDGE_WEBHOOK_TOKEN": "t" * 24,
                                  "BRIDGE_ADMIN_TOKEN": "a" * 24})
    supervisor = Supervisor(settings, "127.0.0.1", 0)
    supervisor.prepare()
    try:
        port = int(supervisor.url.rsplit(":", 1)[1])
        assert supervisor.url == f"http://127.0.0.1:{port}"
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError) as refused:
                other.bind(("127.0.0.1", port))
                other.listen()
            assert refused.value.errno == errno.EADDRINUSE
    finally:
        supervisor.close()
    with socket.socket() as after:
        after.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        after.bind(("127.0.0.1", port))  # released
