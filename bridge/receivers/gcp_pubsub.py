"""Google Cloud Billing budget notifications delivered by a Pub/Sub push subscription.

Contract with the server (and with `rules explain`):

- `authenticate(request, ctx)` verifies the push request's OIDC token (`Authorization: Bearer <JWT>`, RS256,
  https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions): signature against Google's keys,
  issuer, audience, expiry and issue time against `ctx.now` (with a small skew), then the service-account
  email allowlist and `email_verified`. The server calls it before `parse`.
- `parse(request, ctx)` only decodes the body, so `rules explain` can run it on a saved payload. It does no
  I/O.

Settings (`ctx.settings`): `audience` (BRIDGE_GCP_AUDIENCE, required: without it every request is refused with
503 `gcp_audience_not_configured`; the audience is never taken from the request's URL or Host header, which the
sender controls, so a token minted for another endpoint cannot be replayed here),
`service_accounts` (list of allowed service-account emails, or a comma-separated string; empty rejects all),
`certs` (a dict `{kid: PEM certificate}` or the path of a JSON file holding one, for offline/air-gapped
installs and tests), `clock_skew_seconds` (default 60).
Services (`ctx.services`): `fetch_url(url) -> bytes`, used to fetch Google's certificates from
`https://www.googleapis.com/oauth2/v1/certs` when `certs` is not set (cached for an hour).

Budget semantics (https://cloud.google.com/billing/docs/how-to/budgets-programmatic-notifications, cloud-cost.md
§4.1): the budget publishes "at regular intervals" whether or not a threshold was crossed. A message without
`alertThresholdExceeded` / `forecastThresholdExceeded` is a routine spend report: it still becomes an Alert
(so it is recorded), but with `fields["routine"] = "true"` and no `cloud_cost_increase_pct` dimension, so
rules record it without paging. Once a threshold is crossed every later report of the period repeats it, so
`source_event_id` is `<budgetId>:<costIntervalStart>:<actual|forecast>:<threshold>` (repeats and Pub/Sub
redeliveries are duplicates) and `group_key` is `gcp-budget:<budgetId>:<costIntervalStart>` (a higher
threshold updates the same incident).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.auth import crypt

from bridge.errors import AuthError, BadPayload, Forbidden, ServiceUnavailable
from bridge.model import Alert, AlertState, CostFacts, Link
from bridge.receivers.base import InboundRequest, Parsed, ReceiverContext
from bridge.receivers.cost import (
    cost_dimensions,
    cost_fields,
    format_money,
    format_pct,
    increase_pct,
    is_new_spend,
    parse_amount,
    plain,
)
from bridge.receivers.jsonbody import load_json

log = logging.getLogger(__name__)

SOURCE = "gcp-pubsub"
CATEGORIES = frozenset({"cloud_cost"})
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
# "iss: https://accounts.google.com" (authenticate-push-subscriptions); Google ID tokens also use the bare form.
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
DEFAULT_SKEW_SECONDS = 60
CERTS_TTL_SECONDS = 3600       # Google rotates its signing keys over days; an hour keeps us current
CERTS_REFETCH_SECONDS = 60     # an unknown kid triggers at most one refetch a minute (no fetch amplification)

FetchUrl = Callable[[str], bytes]


class GoogleCertsUnavailable(ServiceUnavailable):
    """Google's token-signing certificates could not be fetched or read: our problem, so 503 with a JSON reason
    (Pub/Sub redelivers a 5xx)."""

    status = 503
    code = "gcp_certs_unavailable"


AUDIENCE_MISSING = ("BRIDGE_GCP_AUDIENCE is not set, so no Pub/Sub push token can be checked: set it to the push "
                    "subscription's audience (--push-auth-token-audience, by default the push endpoint URL)")


class AudienceNotConfigured(ServiceUnavailable):
    """BRIDGE_GCP_AUDIENCE is unset: every push is refused with 503 until the operator sets it.

    503, not 401: the sender did nothing wrong, and Pub/Sub keeps redelivering a 5xx (up to the subscription's
    retention), so nothing is lost once the audience is set.
    """

    status = 503
    code = "gcp_audience_not_configured"

    def __init__(self) -> None:
        super().__init__(AUDIENCE_MISSING)


# ---------------------------------------------------------------------------------------------------------------
# OIDC token verification


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _split_token(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url(header_b64))
        payload = json.loads(_b64url(payload_b64))
        signature = _b64url(signature_b64)
    # RecursionError: this runs before the signature is checked, and an 8 KB header holds 3,000 levels of nesting.
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise AuthError("the bearer token is not a JWT", code="gcp_bad_token") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AuthError("the bearer token is not a JWT", code="gcp_bad_token")
    return header, payload, f"{header_b64}.{payload_b64}".encode("ascii"), signature


class GoogleCerts:
    """Google's `{kid: PEM certificate}` map, fetched through `fetch_url` and cached; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._fetched_at: datetime | None = None

    def get(self, fetch_url: FetchUrl | None, now: datetime, *, kid: str | None) -> dict[str, str]:
        """The cached certificates; refetched when older than an hour, or (rate-limited) for an unknown kid."""
        with self._lock:
            age = (now - self._fetched_at).total_seconds() if self._fetched_at else None
            fresh = age is not None and 0 <= age < CERTS_TTL_SECONDS
            unknown_kid = kid is not None and kid not in self._certs
            if fresh and not (unknown_kid and age is not None and age >= CERTS_REFETCH_SECONDS):
                return dict(self._certs)
        if fetch_url is None:
            raise GoogleCertsUnavailable("no Google certificates: set BRIDGE_GCP_CERTS or provide a fetcher")
        try:
            certs = _certs_from_json(fetch_url(GOOGLE_CERTS_URL))
        except Exception as exc:
            raise GoogleCertsUnavailable(f"could not fetch Google's certificates: {exc}") from exc
        with self._lock:
            self._certs, self._fetched_at = certs, now
            return dict(certs)


def _certs_from_json(data: bytes | str) -> dict[str, str]:
    loaded = json.loads(data)
    if not isinstance(loaded, Mapping) or not all(isinstance(v, str) for v in loaded.values()):
        raise ValueError("certificates must be a JSON object {kid: PEM certificate}")
    return {str(k): v for k, v in loaded.items()}


def configured_certs(setting: Any) -> dict[str, str] | None:
    """The `certs` setting as `{kid: PEM}`: a mapping as is, inline JSON text, or the path of a JSON file.

    None when unset (then Google's certificates are fetched).
    """
    if not setting:
        return None
    if isinstance(setting, Mapping):
        return {str(k): str(v) for k, v in setting.items()}
    try:
        text = str(setting).strip()
        if text.startswith("{"):
            return _certs_from_json(text)
        return _certs_from_json(Path(text).read_bytes())
    except (OSError, ValueError) as exc:
        # A broken configuration is ours: not a 4xx (the message would be acknowledged as "bad" forever).
        raise GoogleCertsUnavailable(f"cannot read the certificates file {setting}: {exc}") from exc


def configured_audience(settings: Mapping[str, Any]) -> str:
    """The `audience` setting (BRIDGE_GCP_AUDIENCE); raises AudienceNotConfigured (503) when it is unset.

    Never the request's own URL: that comes from the Host header the sender writes, so a default taken from it
    would accept a token minted for any other endpoint the sender points at us.
    """
    audience = str(settings.get("audience") or "").strip()
    if not audience:
        raise AudienceNotConfigured()
    return audience


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    """The claim `name` as seconds since the epoch; AuthError unless it is a finite JSON number.

    RFC 7519 §2 defines a NumericDate as a JSON number. A string ("inf", "9e99") or `Infinity` (which Python's
    JSON parser accepts) would otherwise make a signed token that never expires; a bool is an int in Python.
    """
    value = claims.get(name)
    if value is None:
        raise AuthError(f"the token has no {name} claim", code="gcp_bad_token")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthError(f"the token's {name} is not a number", code="gcp_bad_token")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any float
        raise AuthError(f"the token's {name} is not a finite number", code="gcp_bad_token") from None
    if not math.isfinite(seconds):
        raise AuthError(f"the token's {name} is not a finite number", code="gcp_bad_token")
    return seconds


def verify_push_token(token: str, *, certs: Mapping[str, str], audience: str, now: datetime,
                      service_accounts: list[str], skew_seconds: int = DEFAULT_SKEW_SECONDS) -> dict[str, Any]:
    """Verify a Pub/Sub push OIDC token; return its claims. Raises AuthError (401) or Forbidden (403).

    Signature: RS256 only, with google-auth's RSA verifier (`google.auth.crypt.verify_signature`) against the
    certificate named by `kid` (all of them if the token names none). Claims, checked against `now` rather than
    the system clock so tests and replays are deterministic: `iss` is Google, `aud` equals `audience` (which
    must be the configured one, never derived from the request), `exp` and `iat` are present and finite JSON
    numbers, `exp` is in the future and `iat` is not (both with `skew_seconds`). Then the identity: `email` in
    `service_accounts` and `email_verified` true (authenticate-push-subscriptions: "require email == <expected
    service account> and email_verified") are 403s, since the token itself is genuine.
    """
    header, claims, signed, signature = _split_token(token)
    if header.get("alg") != "RS256":
        raise AuthError(f"unsupported token algorithm {header.get('alg')!r}: Pub/Sub signs RS256",
                        code="gcp_bad_token")
    kid = header.get("kid")
    candidates = [certs[kid]] if isinstance(kid, str) and kid in certs else ([] if kid else list(certs.values()))
    if not candidates:
        raise AuthError(f"the token's signing key {kid!r} is not one of Google's current keys",
                        code="gcp_bad_token")
    try:
        valid = crypt.verify_signature(signed, signature, candidates)
    except ValueError:
        valid = False
    if not valid:
        raise AuthError("the token signature does not verify", code="gcp_bad_token")

    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise AuthError(f"the token issuer {claims.get('iss')!r} is not Google", code="gcp_bad_token")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if not audience or audience not in audiences:
        raise AuthError(f"the token audience {aud!r} is not this endpoint's audience {audience!r} "
                        "(set BRIDGE_GCP_AUDIENCE to the push subscription's audience)", code="gcp_bad_token")
    ts = now.timestamp()
    exp = _numeric_date(claims, "exp")
    iat = _numeric_date(claims, "iat")
    if ts > exp + skew_seconds:
        raise AuthError("the token has expired", code="gcp_token_expired")
    if iat > ts + skew_seconds:
        raise AuthError("the token was issued in the future; check the clock", code="gcp_bad_token")

    email = claims.get("email")
    if not service_accounts:
        raise Forbidden("no Pub/Sub service account is allowed: set BRIDGE_GCP_SERVICE_ACCOUNTS to the push "
                        "subscription's service-account email", code="gcp_sa_not_allowed")
    if email not in service_accounts:
        raise Forbidden(f"service account {email!r} is not in BRIDGE_GCP_SERVICE_ACCOUNTS",
                        code="gcp_sa_not_allowed")
    if claims.get("email_verified") is not True:
        raise Forbidden("the token's email is not verified", code="gcp_sa_not_allowed")
    return claims


# ---------------------------------------------------------------------------------------------------------------
# Budget notification


@dataclass(frozen=True)
class GcpBudgetFacts:
    """One decoded budget notification (`message.data`) with its attributes and the computed figures."""

    budget_id: str | None
    billing_account_id: str | None
    schema_version: str | None
    display_name: str | None
    cost: Decimal | None
    budget: Decimal | None
    currency: str
    interval_start: str | None
    amount_type: str | None
    alert_threshold: Decimal | None      # fraction, 1.0 = 100 % (the threshold crossed, not the ratio)
    forecast_threshold: Decimal | None
    increase_pct: Decimal | None
    new_spend: bool

    @property
    def routine(self) -> bool:
        """No threshold crossed: a periodic spend report, not an alert."""
        return self.alert_threshold is None and self.forecast_threshold is None

    @property
    def forecast(self) -> bool:
        """Only a forecast threshold was crossed. An actual threshold takes precedence when both are present."""
        return self.alert_threshold is None and self.forecast_threshold is not None

    @property
    def threshold(self) -> Decimal | None:
        """The crossed threshold this alert is about (fraction of the budget)."""
        return self.alert_threshold if self.alert_threshold is not None else self.forecast_threshold


def _amount(data: Mapping[str, Any], key: str) -> Decimal | None:
    try:
        return parse_amount(data.get(key))
    except ValueError:
        raise BadPayload(f"budget notification: {key} is not a number ({data.get(key)!r})") from None


def parse_budget_data(data: Mapping[str, Any], attributes: Mapping[str, Any] | None = None) -> GcpBudgetFacts:
    """Read a decoded budget notification (and the message attributes) into `GcpBudgetFacts`.

    Increase = (costAmount - budgetAmount) / budgetAmount x 100 (cloud-cost.md §7): it can be negative (a 90 %
    threshold crossed under budget reads -8 %) and is kept; the rules decide. `alertThresholdExceeded` is the
    threshold crossed, never the percentage (pitfall 2).
    """
    attributes = attributes or {}
    cost = _amount(data, "costAmount")
    budget = _amount(data, "budgetAmount")
    return GcpBudgetFacts(
        budget_id=(str(attributes["budgetId"]) if attributes.get("budgetId") else None),
        billing_account_id=(str(attributes["billingAccountId"]) if attributes.get("billingAccountId") else None),
        schema_version=(str(attributes["schemaVersion"]) if attributes.get("schemaVersion") else None),
        display_name=(str(data["budgetDisplayName"]) if data.get("budgetDisplayName") else None),
        cost=cost,
        budget=budget,
        currency=str(data.get("currencyCode") or "USD"),
        interval_start=(str(data["costIntervalStart"]) if data.get("costIntervalStart") else None),
        amount_type=(str(data["budgetAmountType"]) if data.get("budgetAmountType") else None),
        alert_threshold=_amount(data, "alertThresholdExceeded"),
        forecast_threshold=_amount(data, "forecastThresholdExceeded"),
        increase_pct=increase_pct(cost, budget),
        new_spend=is_new_spend(cost, budget),
    )


def _budget_ref(f: GcpBudgetFacts) -> str:
    # budgetId is the stable identity; without it (payload unwrapping drops attributes, cloud-cost.md §4.2) the
    # billing account plus display name is the best stable substitute.
    return f.budget_id or f"{f.billing_account_id or 'unknown-account'}/{f.display_name or 'unknown-budget'}"


def _threshold_pct(fraction: Decimal | None) -> str | None:
    return plain(fraction * 100) if fraction is not None else None


def budget_alert(f: GcpBudgetFacts, *, message_id: str, received_at: datetime, raw: Any) -> Alert:
    """The Alert of one budget notification (routine or threshold)."""
    cost = CostFacts(
        actual=f.cost, expected=f.budget, budget=f.budget,
        threshold=(f.threshold * f.budget if f.threshold is not None and f.budget is not None else None),
        impact=(f.cost - f.budget if f.cost is not None and f.budget is not None else None),
        currency=f.currency, period=f.interval_start or "", forecast=f.forecast, new_spend=f.new_spend,
        increase_pct=f.increase_pct,
    )
    ref = _budget_ref(f)
    name = f.display_name or ref
    spend = f"{format_money(f.cost, f.currency)} of {format_money(f.budget, f.currency)} budget"
    pct = "new spend, zero budget" if f.new_spend else format_pct(f.increase_pct)
    if f.routine:
        title = f"GCP budget {name}: routine spend report, {spend} ({pct})"
        event_id = message_id or f"{ref}:{f.interval_start}:routine"
        kind_label = None
    else:
        kind_label = "forecast" if f.forecast else "actual"
        crossed = f"{_threshold_pct(f.threshold)} % {'forecast ' if f.forecast else ''}threshold crossed"
        title = f"GCP budget {name}: {crossed}, {spend} ({pct})"
        # Repeats of the same crossed threshold in the same period are the same event (cloud-cost.md §4.1).
        event_id = f"{ref}:{f.interval_start}:{kind_label}:{plain(f.threshold)}"
    fields = cost_fields(cost, provider="gcp", kind="budget", extra={
        "parse_status": "ok",
        "routine": "true" if f.routine else "false",
        "account": f.billing_account_id,
        "budget_id": f.budget_id,
        "budget_name": f.display_name,
        "budget_amount_type": f.amount_type,
        "cost_interval_start": f.interval_start,
        "threshold_kind": kind_label,
        "threshold_pct": _threshold_pct(f.threshold),
        "alert_threshold_pct": _threshold_pct(f.alert_threshold),
        "forecast_threshold_pct": _threshold_pct(f.forecast_threshold),
        "schema_version": f.schema_version,
        "message_id": message_id or None,
    })
    links: tuple[Link, ...] = ()
    if f.billing_account_id:
        links = (Link(f"https://console.cloud.google.com/billing/{f.billing_account_id}/budgets",
                      "Budgets of this billing account (Google Cloud console)"),)
    message = "\n".join(line for line in (
        f"Budget {name} ({ref})",
        f"Cost {format_money(f.cost, f.currency)} since {f.interval_start or '?'}; budget "
        f"{format_money(f.budget, f.currency)} ({f.amount_type or 'amount type unknown'})",
        f"Increase over budget: {pct}",
        f"Actual threshold crossed: {_threshold_pct(f.alert_threshold)} %" if f.alert_threshold is not None else "",
        f"Forecast threshold crossed: {_threshold_pct(f.forecast_threshold)} %"
        if f.forecast_threshold is not None else "",
        "Routine report: no threshold crossed." if f.routine else "",
    ) if line)
    return Alert(
        source=SOURCE,
        source_event_id=event_id,
        received_at=received_at,
        title=title,
        message=message,
        state=AlertState.FIRING,  # budgets never send a recovery
        group_key=f"gcp-budget:{ref}:{f.interval_start or 'unknown-interval'}",
        tags=(("billing_account", f.billing_account_id),) if f.billing_account_id else (),
        dimensions={} if f.routine else cost_dimensions(f.increase_pct),
        categories=CATEGORIES,
        links=links,
        fields=fields,
        cost=cost,
        raw=raw,
    )


def decode_push(body: bytes) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Decode a wrapped push body (https://cloud.google.com/pubsub/docs/push): (envelope, data, messageId).

    Raises BadPayload when the body is not a push envelope or `message.data` is not base64 JSON.
    """
    try:
        envelope = load_json(body)
    except BadPayload as exc:
        raise BadPayload(f"{exc.message}: expected a Pub/Sub push envelope (keep the payload wrapper on; "
                         "--push-no-wrapper drops the budgetId attribute)") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise BadPayload("body is not a Pub/Sub push envelope: no message object")
    data_b64 = message.get("data")
    if not isinstance(data_b64, str) or not data_b64:
        raise BadPayload("Pub/Sub message has no data")
    try:
        raw = base64.b64decode(re.sub(r"\s", "", data_b64), validate=True)
    except (binascii.Error, ValueError):
        raise BadPayload("Pub/Sub message.data is not base64") from None
    try:
        data = load_json(raw, what="Pub/Sub message.data")
    except BadPayload as exc:
        raise BadPayload(f"{exc.message}: this endpoint takes Cloud Billing budget notifications") from None
    if not isinstance(data, dict):
        raise BadPayload("Pub/Sub message.data is not a JSON object")
    # Current docs show both spellings; older examples only message_id (cloud-cost.md §4.2).
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    return envelope, data, message_id


class GcpPubSubReceiver:
    """Receiver for `POST /webhooks/gcp-pubsub` (see the module docstring for settings and contract)."""

    name = SOURCE

    def __init__(self, google_certs: GoogleCerts | None = None) -> None:
        self._google_certs = google_certs if google_certs is not None else GoogleCerts()

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Verify the push request's OIDC token (see `verify_push_token`); raises AuthError or Forbidden.

        Without a configured audience nothing can be verified: AudienceNotConfigured (503) before anything
        else, so no certificate is fetched for anyone either.
        """
        audience = configured_audience(ctx.settings)
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing Authorization: Bearer token: enable authentication (a service account) "
                            "on the push subscription", code="gcp_no_token")
        token = token.strip()
        header, _, _, _ = _split_token(token)
        try:
            certs = configured_certs(ctx.settings.get("certs"))
            if certs is None:
                kid = header.get("kid") if isinstance(header.get("kid"), str) else None
                certs = self._google_certs.get(ctx.services.get("fetch_url"), ctx.now, kid=kid)
        except GoogleCertsUnavailable as exc:
            # The app answers a RequestError without logging it; an operator must see why pushes are retried.
            log.warning("Google's token certificates unavailable, answering 503 (Pub/Sub retries): %s", exc.message)
            raise
        accounts = ctx.settings.get("service_accounts") or []
        if isinstance(accounts, str):
            accounts = [a for a in re.split(r"[,\s]+", accounts) if a]
        verify_push_token(
            token, certs=certs, audience=audience, now=ctx.now,
            service_accounts=list(accounts),
            skew_seconds=int(ctx.settings.get("clock_skew_seconds", DEFAULT_SKEW_SECONDS)),
        )

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Decode the push envelope into one budget Alert (routine reports included)."""
        envelope, data, message_id = decode_push(request.body)
        attributes = envelope["message"].get("attributes") or {}
        if not isinstance(attributes, dict):
            attributes = {}
        if "costAmount" not in data and "budgetAmount" not in data:
            # Not a budget notification (for example a cost-anomaly notification, whose schema is unpublished:
            # cloud-cost.md §9). Refusing it would make Pub/Sub redeliver it for days; record it instead.
            return Parsed(alerts=[_unrecognized_alert(data, attributes, message_id, ctx.now, envelope)])
        facts = parse_budget_data(data, attributes)
        return Parsed(alerts=[budget_alert(facts, message_id=message_id, received_at=ctx.now,
                                           raw={**envelope, "decoded_data": data})])


def _unrecognized_alert(data: Mapping[str, Any], attributes: Mapping[str, Any], message_id: str,
                        now: datetime, envelope: Mapping[str, Any]) -> Alert:
    cost = CostFacts()
    account = str(attributes.get("billingAccountId") or "") or None
    fields = cost_fields(cost, provider="gcp", kind="budget", extra={
        "parse_status": "unrecognized", "routine": "false", "account": account, "message_id": message_id or None,
    })
    keys = ", ".join(sorted(str(k) for k in data)[:10])
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return Alert(
        source=SOURCE,
        source_event_id=message_id or f"sha256:{key}",
        received_at=now,
        title=f"GCP Pub/Sub notification not recognized as a budget notification (keys: {keys})",
        message=json.dumps(data, indent=2, sort_keys=True)[:4000],
        state=AlertState.FIRING,
        group_key=f"gcp-pubsub:{account or 'unknown-account'}:sha256:{key}",
        categories=CATEGORIES,
        fields=fields,
        cost=cost,
        raw={**envelope, "decoded_data": dict(data)},
    )
