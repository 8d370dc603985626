"""Settings from the environment. Every secret can also come from a file (`NAME_FILE`).

Secrets are kept in `Secret` wrappers whose repr never shows the value, so a settings object can be logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.durations import parse_duration
from bridge.errors import ConfigError
from bridge.logformat import log_format


class Secret:
    """A secret value that never appears in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is sent."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


DEFAULT_DATABASE_URL = "sqlite:///incident-bridge.db"
MAX_ALERTS_SETTING = "BRIDGE_MAX_ALERTS_PER_REQUEST"
# Alerts one webhook may carry. A request is answered once all of them are journaled: 10,000 took 1.1 to 1.6 s on
# SQLite and 1.9 to 2.9 s on PostgreSQL on the busy 2-core machine (benchmarks/resilience_batch.py), inside the
# issue's 5 s and far from gunicorn's 60 s worker timeout. The leanest Alertmanager alert (about 95 bytes) fits
# about 11,000 times in the default 1 MiB body: the two limits meet, and a sender that needs more raises both.
DEFAULT_MAX_ALERTS = 10_000
DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
DEFAULT_API_URL = "https://api.pagerduty.com"
# How long a request's write may wait for the database's write lock (the writer lock and SQLite's busy wait
# together; PostgreSQL's lock_timeout) before it is answered 503 database_busy: well under Datadog's 15 s webhook
# timeout (a sender that timed out has no answer to act on, and its retry would find the request still queued),
# and far above a normal wait (a commit, a checkpoint: milliseconds). BRIDGE_DB_LOCK_TIMEOUT changes it.
DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_STALL_THRESHOLD = 300.0
# BRIDGE_RETENTION: decided alerts, finished jobs and notices older than this are pruned by the worker. A day at
# least: within it a sender's retry of a forgotten alert would be taken for a new one.
DEFAULT_RETENTION_SECONDS = 30 * 86400.0
MIN_RETENTION_SECONDS = 86400.0


@dataclass(frozen=True)
class Settings:
    """The bridge's configuration. Build with `Settings.from_env(os.environ)`; tests build it directly."""

    database_url: str = DEFAULT_DATABASE_URL
    rules_path: str = ""
    webhook_token: Secret = field(default_factory=lambda: Secret(""))
    # The operators' credential: the JSON API, rules reloads, silences, job retries and the console. Never
    # accepted on webhooks, and the webhook token is never accepted here (senders hold that one).
    admin_token: Secret = field(default_factory=lambda: Secret(""))
    # Host names the bridge answers to (DNS-rebinding guard). Empty: loopback names only for requests trusted
    # because they come from loopback; any host for requests that present a credential.
    allowed_hosts: tuple[str, ...] = ()
    routing_key: Secret = field(default_factory=lambda: Secret(""))
    events_url: str = DEFAULT_EVENTS_URL
    api_token: Secret = field(default_factory=lambda: Secret(""))
    api_url: str = DEFAULT_API_URL
    pd_from: str = ""
    pd_service_id: str = ""
    dd_api_key: Secret = field(default_factory=lambda: Secret(""))
    dd_app_key: Secret = field(default_factory=lambda: Secret(""))
    dd_site: str = "datadoghq.com"
    datadog_api_url: str = ""
    public_url: str = ""
    max_body_bytes: int = 1024 * 1024
    max_alerts_per_request: int = DEFAULT_MAX_ALERTS
    receivers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    events_rate_per_minute: int = 120
    http_timeout_seconds: float = 10.0
    related_window_days: int = 180  # how far back related-incident lookups search (PagerDuty: 6 months/query)
    pagerduty_ca_bundle: str = ""  # a private CA for PagerDuty's hosts (a TLS-inspecting proxy, or tests)
    db_lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT  # a request's wait for the write lock, then 503
    # The least time between the end of one reconciliation pass and the start of the next (a worker restarting
    # often must not look every recent incident up again each time).
    reconcile_interval_seconds: float = 600.0
    # Self-monitoring (`bridge.health`): the oldest pending outbox job or undecided journal entry older than this
    # makes /readyz fail and pages the fallback key. 5 minutes: far above a healthy wait (milliseconds; a retry
    # of PagerDuty's blip: seconds), well inside the process's "P0: immediate" expectation.
    stall_threshold_seconds: float = DEFAULT_STALL_THRESHOLD
    # Where the page about the bridge itself goes (a PagerDuty Events API v2 integration key of another service).
    fallback_routing_key: Secret = field(default_factory=lambda: Secret(""))
    # Missed resolves (`bridge.followups.missed_resolve`): a Datadog incident open this long has its monitor groups'
    # state asked from Datadog. An hour: most incidents resolve well before, and No Data windows are minutes long.
    missed_resolve_after_seconds: float = 3600.0
    log_level: str = "INFO"  # BRIDGE_LOG_LEVEL as given; `bridge.preflight.log_level` checks and reads it
    log_format: str = "text"  # BRIDGE_LOG_FORMAT: text or json (`bridge.logformat.log_format` checks it)
    # How long a console sign-in lasts (the cookie's expiry and the server's check of it).
    console_session_seconds: float = 12 * 3600.0
    # Mark the console's cookie Secure always (a TLS-terminating proxy that does not say X-Forwarded-Proto); it is
    # Secure anyway on https requests and when BRIDGE_PUBLIC_URL is https.
    console_secure_cookie: bool = False
    # How often the worker looks for missed heartbeats (`heartbeats:` in the rules): how late a silence pages.
    heartbeat_check_seconds: float = 15.0
    # How long decided alerts, finished jobs and notices are kept (`bridge.store.retention`); 0 keeps them forever.
    retention_seconds: float = DEFAULT_RETENTION_SECONDS

    def tls_verify(self) -> Any:
        """What httpx2 should verify PagerDuty's certificates with: the system store, or the CA bundle (a PEM file,
        or a directory of them as OpenSSL's c_rehash lays out)."""
        if not self.pagerduty_ca_bundle:
            return True
        import ssl

        if os.path.isdir(self.pagerduty_ca_bundle):
            return ssl.create_default_context(capath=self.pagerduty_ca_bundle)
        return ssl.create_default_context(cafile=self.pagerduty_ca_bundle)

    @property
    def dry_run(self) -> bool:
        """No routing key: pages are recorded and printed, never sent."""
        return not self.routing_key

    def effective_rules_path(self) -> Path:
        """BRIDGE_RULES, else ./rules when it exists, else the rules shipped with the package."""
        from bridge.rules.loader import shipped_rules_dir

        if self.rules_path:
            return Path(self.rules_path)
        local = Path("rules")
        if local.is_dir() and any(local.glob("*.yaml")):
            return local
        return shipped_rules_dir()

    def checked_rules_path(self) -> Path:
        """`effective_rules_path()`, or a ConfigError naming BRIDGE_RULES when that path does not exist.

        For the commands that start from the rules (serve, worker, ...): a missing path is the setting's fault,
        said in one line before anything starts. `rules lint` reports it among its own errors instead.
        """
        path = self.effective_rules_path()
        if path.exists():
            return path
        if self.rules_path:
            raise ConfigError(f"BRIDGE_RULES={self.rules_path} does not exist",
                              hint="set BRIDGE_RULES to a rules directory or file, or unset it to use ./rules or "
                                   "the shipped rules")
        raise ConfigError(f"no rules: the shipped rules are missing at {path}",
                          hint="set BRIDGE_RULES to a rules directory or file, or reinstall incident-bridge")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the documented environment variables (DESIGN.md's external contract)."""
        def get(name: str, default: str = "") -> str:
            return environ.get(name, default).strip()

        def secret(name: str) -> Secret:
            file_var = environ.get(f"{name}_FILE", "").strip()
            if file_var:
                try:
                    return Secret(Path(file_var).read_text(encoding="utf-8").strip())
                except OSError as exc:
                    raise ConfigError(f"cannot read {name}_FILE ({file_var}): {exc.strerror}",
                                      hint=f"point {name}_FILE at a readable file") from None
            return Secret(environ.get(name, "").strip())

        def number(name: str, default: float) -> float:
            raw = get(name)
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number", hint=f"set {name} to a number") from None

        def positive(name: str, default: float) -> float:
            value = number(name, default)
            if not value > 0 or value == float("inf"):
                raise ConfigError(f"{name}={get(name)!r} is not a positive number of seconds",
                                  hint=f"set {name} to seconds above 0, e.g. {default:g}")
            return value

        def duration(name: str, default: float) -> float:
            raw = get(name)
            if not raw:
                return default
            try:
                # Whole seconds, as every other duration of the bridge may be written.
                return float(parse_duration(int(raw) if raw.isdigit() else raw))
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}", hint=f"set {name} to a duration such as 10m") from None

        def retention(name: str) -> float:
            raw = get(name).lower()
            if raw in ("0", "off", "forever", "never"):
                return 0.0
            value = duration(name, DEFAULT_RETENTION_SECONDS)
            if value < MIN_RETENTION_SECONDS:
                # Shorter would forget an alert while its sender may still retry it (a repeat is then new).
                raise ConfigError(f"{name}={get(name)!r} is shorter than a day",
                                  hint=f"set {name} to a duration of at least 1d (e.g. 30d), or to off to keep "
                                       "everything")
            return value

        def count(name: str, default: int) -> int:
            raw = get(name)
            if not raw:
                return default
            if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
                raise ConfigError(f"{name}={raw!r} is not a whole number of at least 1",
                                  hint=f"set {name} to a count such as {default}, or unset it for {default}")
            return int(raw)

        def flag(name: str) -> bool:
            return get(name).lower() in ("1", "true", "yes", "on")

        def csv(name: str) -> list[str]:
            return [x.strip() for x in get(name).split(",") if x.strip()]

        def stall_threshold() -> float:
            value = duration("BRIDGE_STALL_THRESHOLD", DEFAULT_STALL_THRESHOLD)
            if value < 1:
                raise ConfigError(f"BRIDGE_STALL_THRESHOLD={get('BRIDGE_STALL_THRESHOLD')!r} is below 1 second",
                                  hint="set BRIDGE_STALL_THRESHOLD to a duration such as 5m")
            return value

        webhook_token = secret("BRIDGE_WEBHOOK_TOKEN")
        admin_token = secret("BRIDGE_ADMIN_TOKEN")
        if webhook_token and admin_token and webhook_token.reveal() == admin_token.reveal():
            raise ConfigError("BRIDGE_ADMIN_TOKEN equals BRIDGE_WEBHOOK_TOKEN: every sender would hold the admin "
                              "credential", hint="generate a separate BRIDGE_ADMIN_TOKEN (openssl rand -hex 32)")
        # Tokens stay `Secret` inside the receivers' settings too, so no repr or log of them shows a value.
        receivers: dict[str, dict[str, Any]] = {
            "datadog": {"token": webhook_token, "site": get("DD_SITE", "datadoghq.com")},
            "alertmanager": {"token": webhook_token},
            "aws-sns": {
                "topic_allowlist": csv("BRIDGE_SNS_TOPICS"),
                "max_age_seconds": number("BRIDGE_SNS_MAX_AGE", 3600),
                "cert_dir": get("BRIDGE_SNS_CERT_DIR"),
                "auto_confirm": flag("BRIDGE_SNS_AUTO_CONFIRM"),
            },
            "gcp-pubsub": {
                "audience": get("BRIDGE_GCP_AUDIENCE"),
                "service_accounts": csv("BRIDGE_GCP_SERVICE_ACCOUNTS"),
                "certs": get("BRIDGE_GCP_CERTS"),
            },
            "azure": {"token": secret("BRIDGE_AZURE_TOKEN")},
        }
        return cls(
            database_url=get("BRIDGE_DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
            rules_path=get("BRIDGE_RULES"),
            webhook_token=webhook_token,
            admin_token=admin_token,
            allowed_hosts=tuple(h.lower() for h in csv("BRIDGE_ALLOWED_HOSTS")),
            routing_key=secret("PAGERDUTY_ROUTING_KEY"),
            events_url=get("PAGERDUTY_EVENTS_URL", DEFAULT_EVENTS_URL).rstrip("/") or DEFAULT_EVENTS_URL,
            api_token=secret("PAGERDUTY_API_TOKEN"),
            api_url=get("PAGERDUTY_API_URL", DEFAULT_API_URL).rstrip("/") or DEFAULT_API_URL,
            pd_from=get("PAGERDUTY_FROM"),
            pd_service_id=get("PAGERDUTY_SERVICE_ID"),
            dd_api_key=secret("DD_API_KEY"),
            dd_app_key=secret("DD_APP_KEY"),
            dd_site=get("DD_SITE", "datadoghq.com") or "datadoghq.com",
            datadog_api_url=get("DATADOG_API_URL").rstrip("/"),
            public_url=get("BRIDGE_PUBLIC_URL").rstrip("/"),
            max_body_bytes=int(number("BRIDGE_MAX_BODY_BYTES", 1024 * 1024)),
            max_alerts_per_request=count(MAX_ALERTS_SETTING, DEFAULT_MAX_ALERTS),
            receivers=receivers,
            events_rate_per_minute=int(number("BRIDGE_EVENTS_PER_MINUTE", 120)),
            http_timeout_seconds=number("BRIDGE_HTTP_TIMEOUT", 10.0),
            pagerduty_ca_bundle=get("BRIDGE_PAGERDUTY_CA_BUNDLE"),
            related_window_days=int(number("BRIDGE_RELATED_WINDOW_DAYS", 180)),
            db_lock_timeout_seconds=positive("BRIDGE_DB_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT),
            reconcile_interval_seconds=duration("BRIDGE_RECONCILE_INTERVAL", 600.0),
            log_level=get("BRIDGE_LOG_LEVEL", "INFO") or "INFO",
            log_format=log_format(environ),
            console_session_seconds=duration("BRIDGE_CONSOLE_SESSION", 12 * 3600.0),
            console_secure_cookie=flag("BRIDGE_CONSOLE_SECURE_COOKIE"),
            heartbeat_check_seconds=positive("BRIDGE_HEARTBEAT_CHECK_INTERVAL", 15.0),
            stall_threshold_seconds=stall_threshold(),
            fallback_routing_key=secret("BRIDGE_FALLBACK_ROUTING_KEY"),
            missed_resolve_after_seconds=duration("BRIDGE_MISSED_RESOLVE_AFTER", 3600.0),
            retention_seconds=retention("BRIDGE_RETENTION"),
        )

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        values = [self.webhook_token, self.admin_token, self.routing_key, self.api_token, self.dd_api_key,
                  self.dd_app_key, self.fallback_routing_key]
        out = [s.reveal() for s in values if s]
        for source in self.receivers.values():
            for value in source.values():
                if isinstance(value, Secret) and value and value.reveal() not in out:
                    out.append(value.reveal())
        return out


def reveal(value: Any) -> str:
    """The text of a setting that may be a `Secret` (receivers' settings) or a plain string (tests)."""
    if isinstance(value, Secret):
        return value.reveal()
    return "" if value is None else str(value)


def current() -> Settings:
    """Settings of this process, from os.environ."""
    return Settings.from_env(os.environ)
