"""The access guards as tables: credentials, Host (DNS rebinding), Origin / Sec-Fetch-Site, content types."""

from __future__ import annotations

import pytest

from bridge.config import Secret, Settings
from bridge.errors import AuthError, ConfigError, Forbidden
from bridge.web.access import (
    FORM_TYPE,
    UnsupportedMediaType,
    admin_credential,
    check_browser,
    check_content_type,
    check_host,
    host_name,
    is_loopback_host,
)


@pytest.mark.parametrize(("header", "name", "loopback"), [
    ("127.0.0.1:8080", "127.0.0.1", True),
    ("127.9.9.9", "127.9.9.9", True),
    ("localhost:8080", "localhost", True),
    ("LOCALHOST", "localhost", True),
    ("[::1]:8080", "::1", True),
    ("::1", "::1", True),  # not a valid Host header (no brackets), but it names loopback all the same
    ("evil.example:8080", "evil.example", False),
    ("localhost.evil.example", "localhost.evil.example", False),
    ("127.0.0.1.nip.io", "127.0.0.1.nip.io", False),
    ("", "", False),
], ids=lambda v: repr(v))
def test_host_names(header: str, name: str, loopback: bool) -> None:
    assert host_name(header) == name
    assert is_loopback_host(header) is loopback


@pytest.mark.parametrize(("host", "trusted_by_loopback", "allowed", "public_url", "ok"), [
    ("127.0.0.1:8080", True, (), "", True),
    ("localhost", True, (), "", True),
    ("rebound.evil.example:8080", True, (), "", False),   # DNS rebinding: refused
    ("bridge.internal", False, (), "", True),             # a credential was presented: any name
    ("bridge.internal", True, ("bridge.internal",), "", True),
    ("other.internal", False, ("bridge.internal",), "", False),  # allowed hosts set: enforced for everyone
    ("bridge.example.com", True, (), "https://bridge.example.com/", True),
    ("127.0.0.1", False, ("bridge.internal",), "", True),
], ids=["loopback-ip", "localhost", "rebinding", "credential-any-host", "allowed", "not-allowed",
        "public-url", "loopback-always"])
def test_host_check(host: str, trusted_by_loopback: bool, allowed: tuple[str, ...], public_url: str,
                    ok: bool) -> None:
    if ok:
        check_host(host, trusted_by_loopback=trusted_by_loopback, allowed_hosts=allowed, public_url=public_url)
    else:
        with pytest.raises(Forbidden) as err:
            check_host(host, trusted_by_loopback=trusted_by_loopback, allowed_hosts=allowed,
                       public_url=public_url)
        assert err.value.status == 403 and "BRIDGE_ALLOWED_HOSTS" in err.value.message


OWN = "http://127.0.0.1:8080/"


@pytest.mark.parametrize(("headers", "ok"), [
    ({}, True),                                                   # a sender or a script
    ({"origin": "http://127.0.0.1:8080"}, True),                  # the bridge's own page
    ({"origin": "http://evil.example"}, False),                   # another site's form post
    ({"origin": "null"}, False),                                  # a sandboxed frame or a file: page
    ({"sec-fetch-site": "cross-site"}, False),
    ({"sec-fetch-site": "same-site"}, False),
    ({"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:8080"}, True),
    ({"sec-fetch-site": "none"}, True),                           # typed into the address bar
], ids=["no-browser", "same-origin", "cross-origin", "null-origin", "cross-site", "same-site",
        "same-origin-fetch", "address-bar"])
def test_browser_check(headers: dict[str, str], ok: bool) -> None:
    if ok:
        check_browser(headers, OWN)
    else:
        with pytest.raises(Forbidden):
            check_browser(headers, OWN)


@pytest.mark.parametrize(("content_type", "extra", "ok"), [
    ("application/json", (), True),
    ("application/json; charset=utf-8", (), True),
    ("Application/JSON", (), True),
    ("application/vnd.api+json", (), True),
    ("", (), False),
    ("text/plain", (), False),                  # a browser's cross-site "simple" request
    (FORM_TYPE, (), False),                     # an HTML form
    ("multipart/form-data; boundary=x", (), False),
    ("text/plain; charset=UTF-8", ("text/plain",), True),  # SNS
    (FORM_TYPE, (FORM_TYPE,), True),            # Datadog's form encoding, with a token
], ids=lambda v: repr(v))
def test_content_types(content_type: str, extra: tuple[str, ...], ok: bool) -> None:
    if ok:
        check_content_type(content_type, extra=extra)
    else:
        with pytest.raises(UnsupportedMediaType) as err:
            check_content_type(content_type, extra=extra)
        assert err.value.status == 415 and "application/json" in err.value.message


@pytest.mark.parametrize(("presented", "admin", "remote", "outcome"), [
    ("s3cr3t", "s3cr3t", "203.0.113.5", "admin-token"),
    ("s3cr3t", "s3cr3t", "127.0.0.1", "admin-token"),
    (None, "s3cr3t", "127.0.0.1", "admin_token_required"),      # a token is set: loopback is no longer enough
    ("webhook", "s3cr3t", "127.0.0.1", "admin_token_wrong"),
    ("s3cr3", "s3cr3t", "127.0.0.1", "admin_token_wrong"),
    (None, "", "127.0.0.1", "loopback"),
    ("anything", "", "::1", "loopback"),
    (None, "", "203.0.113.5", "admin_token_not_configured"),
], ids=["token-remote", "token-loopback", "missing", "webhook-token", "prefix", "loopback", "loopback-v6",
        "remote-without-token"])
def test_admin_credential(presented: str | None, admin: str, remote: str, outcome: str) -> None:
    if outcome in ("admin-token", "loopback"):
        credential = admin_credential(presented, admin, remote)
        assert credential.kind == outcome and remote in credential.actor
        assert not admin or admin not in credential.actor
    else:
        with pytest.raises(AuthError) as err:
            admin_credential(presented, admin, remote)
        assert err.value.code == outcome and "BRIDGE_ADMIN_TOKEN" in err.value.message


SECRETS = {
    "BRIDGE_WEBHOOK_TOKEN": "sekrit-webhook-1",
    "BRIDGE_ADMIN_TOKEN": "sekrit-admin-2",
    "BRIDGE_AZURE_TOKEN": "sekrit-azure-3",
    "PAGERDUTY_ROUTING_KEY": "sekrit-routing-4",
    "PAGERDUTY_API_TOKEN": "sekrit-api-5",
    "DD_API_KEY": "sekrit-dd-6",
    "DD_APP_KEY": "sekrit-dd-app-7",
}


def test_no_secret_in_the_repr_of_settings() -> None:
    settings = Settings.from_env(SECRETS)
    text = repr(settings) + str(settings) + repr(settings.receivers)
    for value in SECRETS.values():
        assert value not in text
    assert set(settings.secrets()) == set(SECRETS.values())
    assert isinstance(settings.receivers["datadog"]["token"], Secret)
    assert isinstance(settings.receivers["azure"]["token"], Secret)


def test_secrets_from_files(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "admin"
    path.write_text("from-a-file\n")
    settings = Settings.from_env({"BRIDGE_ADMIN_TOKEN_FILE": str(path)})
    assert settings.admin_token.reveal() == "from-a-file"


def test_the_admin_token_must_differ_from_the_webhook_token() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"BRIDGE_WEBHOOK_TOKEN": "same", "BRIDGE_ADMIN_TOKEN": "same"})
    assert "BRIDGE_ADMIN_TOKEN" in str(err.value) and "same" not in str(err.value)


def test_error_answers_are_bounded() -> None:
    from bridge.errors import MAX_MESSAGE, BadPayload

    answer = BadPayload("unknown schemaId " + "x" * 100_000).to_json()
    assert len(answer["message"]) == MAX_MESSAGE + 3 and answer["error"] == "bad_payload"
