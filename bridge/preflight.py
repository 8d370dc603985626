"""Pre-flight checks: settings in, problems out, before `serve` or `worker` starts anything.

A wrong setting that would only show at the first real page (a routing key of the wrong form, a URL without a
scheme, an unreadable CA bundle) is found here, and said in one line naming the setting and its fix. Each check is
a function of one value that returns a `ConfigError` or None, so they are tested as a table; `problems` runs them
all over a `Settings`, and `check` raises what they found.

Secrets never reach a message: the routing key is described by its length and its characters, never quoted, and a
URL's password is masked.
"""

from __future__ import annotations

import logging
import os
import ssl
from urllib.parse import SplitResult, urlsplit

from bridge.config import Settings
from bridge.errors import ConfigError

# "routing_key: 32-character integration key of a service or ruleset integration" (reference/pagerduty.md §1.2,
# from PagerDuty's developer docs "Send an Alert Event"). The length is all that is documented: the schema's own
# examples mix hex and other letters (events-v2.json: `737ea619db564d41bd9824063e1f8au1`), and ruleset keys start
# with `R`, so the characters are not checked beyond quotes and spaces, which no key has.
ROUTING_KEY_LENGTH = 32
ROUTING_KEY_HINT = ("copy the Integration Key of the service's Events API v2 integration (PagerDuty: Services > "
                    "the service > Integrations), or unset PAGERDUTY_ROUTING_KEY for dry-run")

# The names `logging` knows, as BRIDGE_LOG_LEVEL takes them (any case). WARN is logging's own alias of WARNING,
# accepted so that a setting that worked before these checks still does.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_LEVEL_ALIASES = {"WARN": "WARNING"}

# What each base URL is, with the value to show in a fix. Events and REST are PagerDuty's documented bases
# (reference/pagerduty.md §1.1 and §2); the bridge adds the paths.
URL_EXAMPLES = {
    "PAGERDUTY_EVENTS_URL": "https://events.pagerduty.com",
    "PAGERDUTY_API_URL": "https://api.pagerduty.com",
    "DATADOG_API_URL": "https://api.datadoghq.com",
    "BRIDGE_PUBLIC_URL": "https://bridge.example.com",
}
# The paths `bridge.delivery.events.EventsClient` adds to PAGERDUTY_EVENTS_URL: a base that already ends in one
# (the Events API schema's `servers` entry is `https://events.pagerduty.com/v2`) would be posted to twice over.
EVENTS_PATHS = ("/v2/enqueue", "/v2")

CA_BUNDLE_SETTING = "BRIDGE_PAGERDUTY_CA_BUNDLE"
_CA_BUNDLE_HINT = ("point BRIDGE_PAGERDUTY_CA_BUNDLE at a PEM file of the CA certificates that sign PagerDuty's "
                   "certificates as this host sees them (a TLS-inspecting proxy's CA), or unset it to use the "
                   "system's store")


def routing_key_problem(key: str, name: str = "PAGERDUTY_ROUTING_KEY") -> ConfigError | None:
    """Why `key` (the setting `name`) cannot be an Events API v2 integration key, or None (an empty key is dry-run,
    or no fallback page, not a problem)."""
    if not key:
        return None
    if any(c in "\"'`" for c in key):
        return ConfigError(f"{name} contains quote characters", hint="set the key without quotes")
    if any(c.isspace() for c in key):
        return ConfigError(f"{name} contains a space or a line break",
                           hint=f"set the key alone; {ROUTING_KEY_HINT}")
    if len(key) != ROUTING_KEY_LENGTH:
        return ConfigError(f"{name} is {len(key)} characters long; an Events API v2 integration key "
                           f"has {ROUTING_KEY_LENGTH}", hint=ROUTING_KEY_HINT)
    return None


def url_problem(name: str, value: str) -> ConfigError | None:
    """Why `value` cannot be the base URL `name` (an http:// or https:// URL with a host), or None when it can
    (or is empty: unset, the default applies)."""
    if not value:
        return None
    example = URL_EXAMPLES.get(name, "https://host.example.com")
    shown = _masked(value)
    if "://" not in value:
        return ConfigError(f"{name}={shown} has no scheme",
                           hint=f"write the URL in full, with https:// (or http://), e.g. {example}")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        return ConfigError(f"{name}={shown}: the scheme is {parts.scheme}://, not http:// or https://",
                           hint=f"write the URL with https:// (or http://), e.g. {example}")
    if not parts.hostname:
        return ConfigError(f"{name}={shown} has no host", hint=f"write the URL with a host, e.g. {example}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return ConfigError(f"{name}={shown} has an invalid port",
                           hint=f"write the port as a number from 1 to 65535 after the host, or leave it out, "
                                f"e.g. {example}")
    path = parts.path.rstrip("/")
    added = next((p for p in EVENTS_PATHS if path.endswith(p)), None) if name == "PAGERDUTY_EVENTS_URL" else None
    if added:
        base = _masked(SplitResult(parts.scheme, parts.netloc, path[: -len(added)], "", "").geturl())
        return ConfigError(f"{name}={shown} ends in {added}, a path the bridge adds itself",
                           hint=f"set {name} to the base URL, {base}")
    return None


def ca_bundle_problem(path: str) -> ConfigError | None:
    """Why `path` cannot be BRIDGE_PAGERDUTY_CA_BUNDLE (a readable PEM file of certificates, or a readable
    directory of them as OpenSSL's `c_rehash` lays out), or None (empty: the system's store is used)."""
    if not path:
        return None
    if os.path.isdir(path):
        if not os.access(path, os.R_OK | os.X_OK):
            return ConfigError(f"{CA_BUNDLE_SETTING}={path} is a directory the bridge cannot read",
                               hint=f"make it readable by the bridge's user, or {_CA_BUNDLE_HINT}")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        return ConfigError(f"{CA_BUNDLE_SETTING}={path} does not exist", hint=_CA_BUNDLE_HINT)
    except ssl.SSLError as exc:
        # OpenSSL's reason ("NO_CERTIFICATE_OR_CRL_FOUND", "PEM lib"...): the file is there but holds no
        # certificate it can read (a DER file, a key, an empty file).
        return ConfigError(f"{CA_BUNDLE_SETTING}={path} holds no PEM certificate ({exc.reason or exc})",
                           hint=_CA_BUNDLE_HINT)
    except OSError as exc:
        return ConfigError(f"{CA_BUNDLE_SETTING}={path} cannot be read: {exc.strerror or exc}",
                           hint=f"make it readable by the bridge's user, or {_CA_BUNDLE_HINT}")
    if not context.cert_store_stats()["x509"]:  # CRLs only: nothing to trust
        return ConfigError(f"{CA_BUNDLE_SETTING}={path} holds no certificate", hint=_CA_BUNDLE_HINT)
    return None


def log_level(value: str) -> int:
    """The `logging` level BRIDGE_LOG_LEVEL names (any case; empty is INFO); ConfigError for any other value."""
    name = (value or "INFO").strip().upper()
    name = _LOG_LEVEL_ALIASES.get(name, name)
    if name not in LOG_LEVELS:
        raise ConfigError(f"BRIDGE_LOG_LEVEL={value.strip()!r} is not a log level",
                          hint=f"set BRIDGE_LOG_LEVEL to {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (any "
                               "case), or unset it for INFO")
    return logging.getLevelName(name)  # type: ignore[no-any-return]  # a known name gives its number


def log_level_problem(value: str) -> ConfigError | None:
    """`log_level`'s ConfigError for `value`, or None."""
    try:
        log_level(value)
    except ConfigError as exc:
        return exc
    return None


def problems(settings: Settings) -> list[ConfigError]:
    """Every pre-flight problem of `settings`, in the order of the settings' names in the README."""
    found = [
        log_level_problem(settings.log_level),
        routing_key_problem(settings.routing_key.reveal()),
        routing_key_problem(settings.fallback_routing_key.reveal(), "BRIDGE_FALLBACK_ROUTING_KEY"),
        url_problem("PAGERDUTY_EVENTS_URL", settings.events_url),
        url_problem("PAGERDUTY_API_URL", settings.api_url),
        url_problem("DATADOG_API_URL", settings.datadog_api_url),
        url_problem("BRIDGE_PUBLIC_URL", settings.public_url),
        ca_bundle_problem(settings.pagerduty_ca_bundle),
    ]
    return [p for p in found if p is not None]


class PreflightFailed(ConfigError):
    """Several pre-flight problems at once: one line each, so a user fixes them all in one go."""

    def __init__(self, found: list[ConfigError]) -> None:
        super().__init__(found[0].message, hint=found[0].hint)
        self.problems = found

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def check(settings: Settings) -> None:
    """Raise the pre-flight problems of `settings` (a ConfigError, one line per problem); None when there are none.
    """
    found = problems(settings)
    if len(found) == 1:
        raise found[0]
    if found:
        raise PreflightFailed(found)


def _masked(url: str) -> str:
    """`url` with the password of its user info (if any) replaced by `***`."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
