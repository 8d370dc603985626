"""A setting the bridge cannot start with is one line on stderr naming it and the fix, a non-zero exit, no traceback.

Each case runs the real command line (`python -m bridge ...`) as a user would, with one setting wrong: the
database URL (malformed, unreachable, unwritable, or its driver missing), the rules path, or the port. Nothing here
waits on a network timeout: a closed port on 127.0.0.1 refuses at once.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import REPO, ROUTING_KEY, bridge_env, free_port

pytestmark = pytest.mark.integration

# The database password of every URL below: it must appear in no output.
SECRET = "s3cret-db-password"


def bridge(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The command failed with exactly one stderr line, `incident-bridge: ... (fix: ...)`, naming `expected`."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    assert SECRET not in output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("incident-bridge: ") and "(fix: " in line, line
    for text in expected:
        assert text in line, line
    return line


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # Both tokens are set, so `serve` has no warning to log: any second line on stderr is a failure.
    return bridge_env(tmp_path)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A process of ours holding a port on 127.0.0.1, as another program would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.setblocking(False)
        yield s


def closed_port() -> int:
    return free_port()  # free a moment ago: nothing listens, so a connection is refused at once


def missing_module(name: str) -> None:
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here, so it cannot be the missing driver")


# (id, BRIDGE_DATABASE_URL with {secret}, {port} and {tmp} filled in, a module that must be absent, expected texts)
DATABASE_CASES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("postgres_scheme", "postgres://bridge:{secret}@127.0.0.1:{port}/bridge", "",
     ("BRIDGE_DATABASE_URL=postgres://bridge:***@", "postgresql+psycopg://", "incident-bridge[postgres]")),
    ("not_a_url", "nonsense", "", ("BRIDGE_DATABASE_URL=nonsense", "is not a database URL", "sqlite:///")),
    ("port_not_a_number", "postgresql+psycopg://bridge:{secret}@127.0.0.1:pg/bridge", "",
     ("BRIDGE_DATABASE_URL=", "is not a database URL")),
    ("postgres_closed_port", "postgresql+psycopg://bridge:{secret}@127.0.0.1:{port}/bridge", "",
     ("BRIDGE_DATABASE_URL=postgresql+psycopg://bridge:***@127.0.0.1", "cannot connect", "Connection refused")),
    ("sqlite_unwritable", "sqlite:////proc/nope/bridge.db", "",
     ("BRIDGE_DATABASE_URL=sqlite:////proc/nope/bridge.db", "cannot open or create the SQLite database")),
    ("sqlite_directory_missing", "sqlite:///{tmp}/no-such-dir/bridge.db", "",
     ("BRIDGE_DATABASE_URL=", "no-such-dir", "an existing directory")),
    ("psycopg2_not_installed", "postgresql+psycopg2://bridge:{secret}@127.0.0.1:{port}/bridge", "psycopg2",
     ("BRIDGE_DATABASE_URL=", "'psycopg2'", "not installed", "postgresql+psycopg://",
      "pip install 'incident-bridge[postgres]'")),
    ("mysql_driver_not_installed", "mysql://bridge:{secret}@127.0.0.1:{port}/bridge", "MySQLdb",
     ("BRIDGE_DATABASE_URL=mysql://bridge:***@", "'MySQLdb'", "not installed")),
]

# The commands that start from the database, with arguments that get them as far as opening it.
SERVE = ["serve", "--host", "127.0.0.1", "--port", "{serve_port}"]
STARTING_COMMANDS = [("serve", SERVE), ("worker", ["worker"]), ("incidents", ["incidents"])]
OTHER_DATABASE_COMMANDS = [
    ("related", ["related", "1"]),
    ("postmortem", ["postmortem", "1"]),
    ("silence_list", ["silence", "list"]),
    ("silence_add", ["silence", "add", "-m", "service=checkout", "--owner", "me", "--reason", "test", "--duration",
                     "1h"]),
    ("silence_expire", ["silence", "expire", "1"]),
]


def fill(args: list[str]) -> list[str]:
    return [a.replace("{serve_port}", str(free_port())) for a in args]


@pytest.mark.parametrize("command", [c[1] for c in STARTING_COMMANDS], ids=[c[0] for c in STARTING_COMMANDS])
@pytest.mark.parametrize(("url", "absent", "expected"), [c[1:] for c in DATABASE_CASES],
                         ids=[c[0] for c in DATABASE_CASES])
def test_a_bad_database_url_is_one_line(tmp_path: Path, env: dict[str, str], command: list[str], url: str,
                                        absent: str, expected: tuple[str, ...]) -> None:
    if absent:
        missing_module(absent)
    env["BRIDGE_DATABASE_URL"] = url.format(secret=SECRET, port=closed_port(), tmp=tmp_path)
    result = bridge(fill(command), env, tmp_path)
    if command == ["incidents"] and url.startswith("sqlite:"):
        # A read-only command creates no database: where the file is not, it says so (and creates nothing).
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
        assert result.stderr == (f"incident-bridge: no database at {sa_database(env['BRIDGE_DATABASE_URL'])} "
                                 "(BRIDGE_DATABASE_URL); start the bridge first or point BRIDGE_DATABASE_URL at its "
                                 "database\n")
        return
    assert_one_line_error(result, *expected)


def sa_database(url: str) -> str:
    return url.removeprefix("sqlite:///")


@pytest.mark.parametrize("command", [c[1] for c in OTHER_DATABASE_COMMANDS],
                         ids=[c[0] for c in OTHER_DATABASE_COMMANDS])
def test_every_database_command_says_so(tmp_path: Path, env: dict[str, str], command: list[str]) -> None:
    env["BRIDGE_DATABASE_URL"] = f"postgresql+psycopg://bridge:{SECRET}@127.0.0.1:{closed_port()}/bridge"
    assert_one_line_error(bridge(command, env, tmp_path), "BRIDGE_DATABASE_URL=", "cannot connect")


RULES_COMMANDS = [
    ("serve", SERVE),
    ("worker", ["worker"]),
    ("related_payload", ["related", "--payload",
                         str(REPO / "webhooks" / "datadog" / "examples" / "01-checkout-users-triggered.json"),
                         "--source", "datadog"]),
]


@pytest.mark.parametrize("command", [c[1] for c in RULES_COMMANDS], ids=[c[0] for c in RULES_COMMANDS])
def test_a_missing_rules_path_is_one_line(tmp_path: Path, env: dict[str, str], command: list[str]) -> None:
    env["BRIDGE_RULES"] = str(tmp_path / "no-rules-here")
    line = assert_one_line_error(bridge(fill(command), env, tmp_path), "BRIDGE_RULES=", "does not exist")
    assert str(tmp_path / "no-rules-here") in line


# (id, settings, texts the one line says): each setting of the wrong form, found before anything starts.
PREFLIGHT_CASES: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("routing_key_form", {"PAGERDUTY_ROUTING_KEY": "wrongkey"},
     ("PAGERDUTY_ROUTING_KEY is 8 characters long", "has 32", "Integration Key")),
    ("events_url_no_scheme", {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_EVENTS_URL": "events.pagerduty.com"},
     ("PAGERDUTY_EVENTS_URL=events.pagerduty.com has no scheme", "https://events.pagerduty.com")),
    ("api_url_no_scheme", {"PAGERDUTY_API_URL": "api.pagerduty.com"}, ("PAGERDUTY_API_URL=", "has no scheme")),
    ("public_url_no_host", {"BRIDGE_PUBLIC_URL": "https:///bridge"},
     ("BRIDGE_PUBLIC_URL=https:///bridge has no host",)),
    ("ca_bundle_missing", {"BRIDGE_PAGERDUTY_CA_BUNDLE": "{tmp}/proxy-ca.pem"},
     ("BRIDGE_PAGERDUTY_CA_BUNDLE=", "proxy-ca.pem does not exist")),
    ("ca_bundle_not_pem", {"BRIDGE_PAGERDUTY_CA_BUNDLE": "{tmp}/bridge.log"},
     ("BRIDGE_PAGERDUTY_CA_BUNDLE=", "holds no PEM certificate")),
    ("log_level_unknown", {"BRIDGE_LOG_LEVEL": "verbose"},
     ("BRIDGE_LOG_LEVEL='verbose' is not a log level", "DEBUG, INFO, WARNING, ERROR or CRITICAL")),
]
PREFLIGHT_COMMANDS = [("serve", SERVE), ("worker", ["worker"])]


@pytest.mark.parametrize("command", [c[1] for c in PREFLIGHT_COMMANDS], ids=[c[0] for c in PREFLIGHT_COMMANDS])
@pytest.mark.parametrize(("settings", "expected"), [c[1:] for c in PREFLIGHT_CASES],
                         ids=[c[0] for c in PREFLIGHT_CASES])
def test_a_setting_of_the_wrong_form_is_one_line_before_anything_starts(
        tmp_path: Path, env: dict[str, str], command: list[str], settings: dict[str, str],
        expected: tuple[str, ...]) -> None:
    (tmp_path / "bridge.log").write_text("not a certificate\n")
    env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in settings.items()})
    result = bridge(fill(command), env, tmp_path)
    assert result.returncode == 2
    line = assert_one_line_error(result, *expected)
    assert "wrongkey" not in line and ROUTING_KEY not in result.stdout + result.stderr
    assert not (tmp_path / "bridge.db").exists()  # refused before the database was created


def test_every_setting_of_the_wrong_form_is_said_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    env.update(PAGERDUTY_ROUTING_KEY="wrongkey", PAGERDUTY_EVENTS_URL="events.pagerduty.com")
    result = bridge(fill(SERVE), env, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    first, second = result.stderr.splitlines()
    assert first.startswith("incident-bridge: PAGERDUTY_ROUTING_KEY is 8 characters long") and "(fix: " in first
    assert second.startswith("PAGERDUTY_EVENTS_URL=events.pagerduty.com has no scheme") and "(fix: " in second


@pytest.mark.parametrize("demo", [False, True], ids=["serve", "serve_demo"])
def test_a_port_in_use_is_one_line_and_the_demo_posts_nothing(tmp_path: Path, env: dict[str, str],
                                                              listener: socket.socket, demo: bool) -> None:
    port = listener.getsockname()[1]
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)] + (["--demo"] if demo else [])
    result = bridge(args, env, tmp_path)
    assert_one_line_error(result, f"127.0.0.1:{port}", "--port", "in use")
    assert "demo:" not in result.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected to the port's owner: no demo alert was posted to it
    assert not (tmp_path / "bridge.db").exists()  # refused before anything was created


REDACT_CASES = [
    ("postgres_url", "postgresql+psycopg://bridge:pw@db:5432/bridge", "postgresql+psycopg://bridge:***@db:5432/bridge"),
    ("scheme_sqlalchemy_rejects", "postgres://bridge:pw@db/bridge", "postgres://bridge:***@db/bridge"),
    ("unparsable_port", "postgresql://bridge:pw@db:pg/bridge", "postgresql://bridge:***@db:pg/bridge"),
    ("raw_at_in_password", "postgresql://bridge:p@w@db/bridge", "postgresql://bridge:***@db/bridge"),
    ("raw_slash_in_unparsable", "postgresql://bridge:p/w@db:pg/bridge", "postgresql://bridge:***@db:pg/bridge"),
    ("no_password", "postgresql://db/bridge", "postgresql://db/bridge"),
    ("sqlite", "sqlite:////var/lib/bridge.db", "sqlite:////var/lib/bridge.db"),
    ("not_a_url", "nonsense", "nonsense"),
]


@pytest.mark.parametrize(("url", "shown"), [c[1:] for c in REDACT_CASES], ids=[c[0] for c in REDACT_CASES])
def test_redact_url(url: str, shown: str) -> None:
    from bridge.store import redact_url

    assert redact_url(url) == shown


def test_debug_shows_the_traceback_too(tmp_path: Path, env: dict[str, str]) -> None:
    env.update(BRIDGE_DATABASE_URL="nonsense", BRIDGE_LOG_LEVEL="DEBUG")
    result = bridge(["incidents"], env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("incident-bridge: BRIDGE_DATABASE_URL=nonsense")


HELD = textwrap.dedent("""
    import os, signal, socket, sys, threading
    from bridge.config import Settings
    from bridge.server import Supervisor, wait_until_ready

    port = int(sys.argv[1])
    supervisor = Supervisor(Settings.from_env(os.environ), "127.0.0.1", port)
    supervisor.prepare()
    other = socket.socket()  # another program starts on the port between the check and gunicorn's start
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        other.bind(("127.0.0.1", port))
        other.listen()
        print("other: listening", flush=True)
    except OSError as exc:
        print(f"other: {exc.strerror}", flush=True)

    def probe():
        print(f"ready: {wait_until_ready(supervisor.url, instance=supervisor.instance)}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=probe, daemon=True).start()
    sys.exit(supervisor.run())
""")


def test_the_port_is_held_from_the_check_until_gunicorn_serves_on_it(tmp_path: Path, env: dict[str, str]) -> None:
    """Another program starting between the check and gunicorn's start cannot take the port: `prepare` binds it
    and gunicorn serves on that very socket (there is no moment between check and bind), answering with this
    run's nonce. Then the bridge stops cleanly."""
    env["BRIDGE_LOG_LEVEL"] = "WARNING"
    result = subprocess.run([sys.executable, "-c", HELD, str(free_port())], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    said = [ln for ln in result.stdout.splitlines() if ln.startswith(("other: ", "ready: "))]
    assert said == ["other: Address already in use", "ready: True"], output
