"""Pre-flight checks (`bridge.preflight`): each setting in, its one-line problem (or none) out.

The routing key's documented form is its length, 32 characters (reference/pagerduty.md §1.2); the URLs need a scheme
and a host; the CA bundle must be a readable file of PEM certificates (or a readable directory); the log level one
`logging` knows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import preflight
from bridge.config import Secret, Settings
from bridge.errors import ConfigError
from tests.support.fakes.pagerduty import ROUTING_KEY, tls_material

# The schema's own examples (events-v2.json), one of them not hex, and a ruleset key: all valid.
VALID_KEYS = [ROUTING_KEY, "737ea619db564d41bd9824063e1f8au1", "e93facc04764012d7bfb002500d5d1a6",
              "R0123456789abcdef0123456789abcde"]


@pytest.mark.parametrize("key", ["", *VALID_KEYS], ids=["dry-run", "fake", "schema-example", "hex", "ruleset"])
def test_a_key_of_the_documented_form_passes(key: str) -> None:
    assert preflight.routing_key_problem(key) is None


@pytest.mark.parametrize(("key", "expected"), [
    ("wrongkey", "PAGERDUTY_ROUTING_KEY is 8 characters long; an Events API v2 integration key has 32 (fix: copy "
                 "the Integration Key of the service's Events API v2 integration (PagerDuty: Services > the service "
                 "> Integrations), or unset PAGERDUTY_ROUTING_KEY for dry-run)"),
    (ROUTING_KEY + "0", "PAGERDUTY_ROUTING_KEY is 33 characters long; an Events API v2 integration key has 32"),
    (ROUTING_KEY[:-1], "PAGERDUTY_ROUTING_KEY is 31 characters long"),
    (f'"{ROUTING_KEY}"', "PAGERDUTY_ROUTING_KEY contains quote characters (fix: set the key without quotes)"),
    (f"'{ROUTING_KEY[2:]}'", "PAGERDUTY_ROUTING_KEY contains quote characters"),
    (ROUTING_KEY[:16] + " " + ROUTING_KEY[17:], "PAGERDUTY_ROUTING_KEY contains a space or a line break"),
    (ROUTING_KEY[:16] + "\n" + ROUTING_KEY[17:], "PAGERDUTY_ROUTING_KEY contains a space or a line break"),
], ids=["short", "long", "one-short", "double-quoted", "single-quoted", "space", "newline"])
def test_a_key_of_another_form_is_one_line_that_never_shows_it(key: str, expected: str) -> None:
    problem = preflight.routing_key_problem(key)
    assert problem is not None
    assert str(problem).startswith(expected)
    assert "\n" not in str(problem) and "(fix: " in str(problem)
    assert key.strip("\"'") not in str(problem)


@pytest.mark.parametrize(("name", "value"), [
    ("PAGERDUTY_EVENTS_URL", ""),
    ("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com"),
    ("PAGERDUTY_EVENTS_URL", "https://events.eu.pagerduty.com"),
    ("PAGERDUTY_EVENTS_URL", "http://127.0.0.1:8099"),
    ("PAGERDUTY_EVENTS_URL", "HTTPS://events.pagerduty.com"),
    ("PAGERDUTY_API_URL", "https://api.pagerduty.com"),
    ("PAGERDUTY_API_URL", "https://proxy.internal/pagerduty"),
    ("DATADOG_API_URL", "https://api.datadoghq.eu"),
    ("BRIDGE_PUBLIC_URL", "https://bridge.example.com/incident-bridge"),
    ("BRIDGE_PUBLIC_URL", "http://[::1]:8080"),
], ids=["unset", "events", "eu", "loopback-http", "upper-case-scheme", "api", "api-behind-a-path", "datadog-eu",
        "public-with-path", "ipv6"])
def test_a_url_with_a_scheme_and_a_host_passes(name: str, value: str) -> None:
    assert preflight.url_problem(name, value) is None


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PAGERDUTY_EVENTS_URL", "events.pagerduty.com",
     "PAGERDUTY_EVENTS_URL=events.pagerduty.com has no scheme (fix: write the URL in full, with https:// (or "
     "http://), e.g. https://events.pagerduty.com)"),
    ("PAGERDUTY_API_URL", "api.pagerduty.com", "PAGERDUTY_API_URL=api.pagerduty.com has no scheme (fix: write the "
     "URL in full, with https:// (or http://), e.g. https://api.pagerduty.com)"),
    ("PAGERDUTY_EVENTS_URL", "localhost:8099", "PAGERDUTY_EVENTS_URL=localhost:8099 has no scheme"),
    ("DATADOG_API_URL", "ftp://api.datadoghq.com",
     "DATADOG_API_URL=ftp://api.datadoghq.com: the scheme is ftp://, not http:// or https:// (fix: write the URL "
     "with https:// (or http://), e.g. https://api.datadoghq.com)"),
    ("BRIDGE_PUBLIC_URL", "https:///incidents", "BRIDGE_PUBLIC_URL=https:///incidents has no host (fix: write the "
     "URL with a host, e.g. https://bridge.example.com)"),
    ("PAGERDUTY_API_URL", "https://api.pagerduty.com:https", "PAGERDUTY_API_URL=https://api.pagerduty.com:https "
     "has an invalid port"),
    ("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue",
     "PAGERDUTY_EVENTS_URL=https://events.pagerduty.com/v2/enqueue ends in /v2/enqueue, a path the bridge adds "
     "itself (fix: set PAGERDUTY_EVENTS_URL to the base URL, https://events.pagerduty.com)"),
    ("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/",
     "PAGERDUTY_EVENTS_URL=https://events.pagerduty.com/v2/ ends in /v2, a path the bridge adds itself (fix: set "
     "PAGERDUTY_EVENTS_URL to the base URL, https://events.pagerduty.com)"),
    ("DATADOG_API_URL", "ftp://user:s3cret@api.datadoghq.com", "DATADOG_API_URL=ftp://user:***@api.datadoghq.com:"),
], ids=["events-no-scheme", "api-no-scheme", "host-port-only", "ftp", "no-host", "port-not-a-number",
        "events-with-enqueue-path", "events-with-v2", "password-masked"])
def test_a_url_without_a_scheme_or_host_is_one_line(name: str, value: str, expected: str) -> None:
    problem = preflight.url_problem(name, value)
    assert problem is not None
    assert str(problem).startswith(expected)
    assert "\n" not in str(problem) and "(fix: " in str(problem) and "s3cret" not in str(problem)


def write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def pem_certificate() -> bytes:
    return Path(tls_material().cert_file).read_bytes()


def der_certificate() -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem_certificate().decode())


CA_CASES = [
    ("missing", lambda d: str(d / "nope.pem"), "does not exist"),
    ("empty", lambda d: write(d / "empty.pem", b""), "holds no PEM certificate"),
    ("der", lambda d: write(d / "ca.der", der_certificate()), "holds no PEM certificate"),
    ("private-key", lambda d: write(d / "key.pem", Path(tls_material().key_file).read_bytes()),
     "holds no PEM certificate"),
    ("text", lambda d: write(d / "notes.txt", b"ask the proxy team for the CA\n"), "holds no PEM certificate"),
    ("under-a-file", lambda d: write(d / "file", b"x") + "/ca.pem", "cannot be read: Not a directory"),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CA_CASES], ids=[c[0] for c in CA_CASES])
def test_a_ca_bundle_that_is_not_readable_pem_is_one_line(tmp_path: Path, make: object, expected: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    problem = preflight.ca_bundle_problem(path)
    assert problem is not None
    assert str(problem).startswith(f"BRIDGE_PAGERDUTY_CA_BUNDLE={path} {expected}")
    assert "\n" not in str(problem) and "(fix: " in str(problem)


def test_a_readable_pem_file_or_directory_passes(tmp_path: Path) -> None:
    assert preflight.ca_bundle_problem("") is None  # unset: the system's store
    assert preflight.ca_bundle_problem(tls_material().cert_file) is None
    bundle = write(tmp_path / "bundle.pem", b"# the proxy's CA\n" + pem_certificate() + pem_certificate())
    assert preflight.ca_bundle_problem(bundle) is None
    assert preflight.ca_bundle_problem(str(tmp_path)) is None  # a c_rehash directory


@pytest.mark.parametrize(("value", "level"), [
    ("", 20), ("INFO", 20), ("info", 20), (" Debug ", 10), ("WARNING", 30), ("warn", 30), ("error", 40),
    ("CRITICAL", 50),
])
def test_a_known_log_level_in_any_case(value: str, level: int) -> None:
    assert preflight.log_level(value) == level
    assert preflight.log_level_problem(value) is None


@pytest.mark.parametrize("value", ["verbose", "trace", "10", "NOTSET", "FATAL", "INFO,DEBUG"])
def test_an_unknown_log_level_is_one_line(value: str) -> None:
    problem = preflight.log_level_problem(value)
    assert str(problem) == (f"BRIDGE_LOG_LEVEL={value!r} is not a log level (fix: set BRIDGE_LOG_LEVEL to DEBUG, "
                            "INFO, WARNING, ERROR or CRITICAL (any case), or unset it for INFO)")


def test_settings_of_a_fresh_install_have_no_problem() -> None:
    assert preflight.problems(Settings.from_env({})) == []
    preflight.check(Settings.from_env({"PAGERDUTY_ROUTING_KEY": ROUTING_KEY}))  # raises nothing


def test_one_problem_is_raised_as_it_is() -> None:
    settings = Settings(routing_key=Secret("wrongkey"))
    with pytest.raises(ConfigError) as raised:
        preflight.check(settings)
    assert type(raised.value) is ConfigError
    assert str(raised.value).startswith("PAGERDUTY_ROUTING_KEY is 8 characters long")


def test_every_problem_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "PAGERDUTY_ROUTING_KEY": "wrongkey",
        "PAGERDUTY_EVENTS_URL": "events.pagerduty.com",
        "PAGERDUTY_API_URL": "api.pagerduty.com",
        "DATADOG_API_URL": "api.datadoghq.com",
        "BRIDGE_PUBLIC_URL": "bridge.example.com",
        "BRIDGE_PAGERDUTY_CA_BUNDLE": str(tmp_path / "nope.pem"),
        "BRIDGE_LOG_LEVEL": "verbose",
    })
    with pytest.raises(ConfigError) as raised:
        preflight.check(settings)
    lines = str(raised.value).splitlines()
    assert [line.split("=")[0].split(" ")[0] for line in lines] == [
        "BRIDGE_LOG_LEVEL", "PAGERDUTY_ROUTING_KEY", "PAGERDUTY_EVENTS_URL", "PAGERDUTY_API_URL", "DATADOG_API_URL",
        "BRIDGE_PUBLIC_URL", "BRIDGE_PAGERDUTY_CA_BUNDLE"]
    assert all("(fix: " in line for line in lines)
    assert "wrongkey" not in str(raised.value)
