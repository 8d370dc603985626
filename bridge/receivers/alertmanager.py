"""Prometheus Alertmanager webhook receiver (`POST /webhooks/alertmanager`).

Alertmanager posts one JSON document per notification of an alert *group*; the document carries every alert
of the group (firing and, with `send_resolved: true`, resolved ones). Each alert in `alerts[]` becomes one
`Alert`. The format is the webhook body "version 4" documented in Alertmanager's `docs/configuration.md`,
section `<webhook_config>`:

    version, groupKey, truncatedAlerts, status, receiver, groupLabels, commonLabels, commonAnnotations,
    externalURL, notification_reason, alerts[]: status, labels, annotations, startsAt, endsAt,
    generatorURL, fingerprint

Keys the documentation does not list (`routeLabels` in v0.34) are ignored.

Identity:
- `group_key` = `alertmanager:<fingerprint>`. Alertmanager's fingerprint is a hash of the alert's label set,
  so it is the same for every notification of one alert (firing, repeats, resolved) and is never a timestamp.
  The group's own `groupKey` (the route and its group labels) spans several alerts, so it is only kept as a
  field: paging per alert lets each alert resolve its own incident.
- `source_event_id` = `<fingerprint>:<status>:<startsAt>` (+ `:<endsAt>` when resolved, + `:value=<v>` when the
  alert carries an observed value). Alertmanager repeats a notification every `repeat_interval` and whenever the
  group changes; those repeats of one alert state carry the same id and are deduplicated on receipt. A new
  firing cycle has a new `startsAt` and is a new event. `endsAt` is only part of the id for resolved alerts
  because, for firing ones, Prometheus keeps pushing `endsAt` forward (now + 4 evaluation intervals) on every
  evaluation, which would defeat deduplication. The value is part of it because a repeat carries the latest
  evaluation's annotations: a value that moved may mean a higher severity, which must not be dropped as a
  duplicate.

The severity convention mirrors the Datadog one (`reference/datadog.md` §2.4): the `dimension` label names
what the alert measures (e.g. `users_affected_pct`), and the `value` annotation (or label) carries the
observed value, typically `{{ $value }}`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bridge.config import MAX_ALERTS_SETTING, reveal
from bridge.errors import AuthError, BadPayload
from bridge.model import Alert, AlertState, Link, Notice
from bridge.receivers.base import (
    InboundRequest,
    Parsed,
    ReceiverContext,
    check_alert_count,
    constant_time_equals,
    presented_token,
)
from bridge.receivers.jsonbody import load_json

SOURCE = "alertmanager"

# Settings keys (ctx.settings) and their defaults.
DEFAULT_DIMENSION_LABEL = "dimension"
DEFAULT_VALUE_ANNOTATION = "value"
DEFAULT_VALUE_LABEL = "value"
DEFAULT_CATEGORY_LABEL = "category"

# Go's zero time: what Alertmanager renders for an unset `endsAt`. It means "unknown", not year 1.
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# Labels that tell alerts of one alertname apart, appended to a title built from `alertname`.
_KEY_LABELS = ("service", "job", "instance", "namespace", "pod")

# Annotations that make up the message, in this order. `message` is what kube-prometheus rules use.
_MESSAGE_ANNOTATIONS = ("summary", "description", "message")

_SUPPORTED_VERSION = "4"


class AlertmanagerReceiver:
    """Receiver for Alertmanager's webhook (`webhook_configs`), body version 4.

    Settings (`ctx.settings`):
    - `token`: the shared secret; when set, requests must present it as `Authorization: Bearer <token>`
      (Alertmanager `http_config.authorization`) or as the basic-auth password (`http_config.basic_auth`).
    - `dimension_label` (default `dimension`), `value_annotation` (default `value`), `value_label`
      (default `value`), `category_label` (default `category`): which labels/annotations carry the
      severity convention.
    """

    name = SOURCE

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Check the shared token when one is configured; raise `AuthError` otherwise.

        The error never repeats what was presented: a wrong token may be a real secret of something else.
        """
        expected = reveal(ctx.settings.get("token"))
        if not expected:
            return
        given = presented_token(request.headers)
        if given is None:
            raise AuthError(
                "missing credentials: send the webhook token as 'Authorization: Bearer <token>' "
                "(http_config.authorization) or as the basic-auth password (http_config.basic_auth)"
            )
        if not constant_time_equals(given, expected):
            raise AuthError("wrong webhook token")

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Turn one webhook body into one Alert per entry of `alerts[]`.

        Raises `BadPayload` when the body is not JSON, not an object, has no usable `alerts` list, or when no
        alert in it is usable; `TooManyAlerts` when the list is longer than `ctx.max_alerts`. A single malformed
        alert in an otherwise good batch is skipped with a warning Notice, so one bad entry cannot make
        Alertmanager drop (a 400 is not retried) the good ones.
        """
        body = _load_json(request.body)
        alerts_in = body.get("alerts")
        if not isinstance(alerts_in, list):
            raise BadPayload(
                "not an Alertmanager webhook: the body has no 'alerts' list "
                "(expected the webhook_config body, version 4)"
            )
        if not alerts_in:
            raise BadPayload("the Alertmanager webhook carries an empty 'alerts' list: nothing to process")
        check_alert_count(len(alerts_in), ctx)

        version = body.get("version")
        envelope = _Envelope(
            version=str(version) if version is not None else "",
            group_key=_as_str(body.get("groupKey")),
            receiver=_as_str(body.get("receiver")),
            status=_as_str(body.get("status")),
            external_url=_as_str(body.get("externalURL")),
            notification_reason=_as_str(body.get("notification_reason")),
            truncated=_as_int(body.get("truncatedAlerts")),
        )
        conv = _Convention.from_settings(ctx.settings)

        alerts: list[Alert] = []
        notices: list[Notice] = []
        problems: list[str] = []
        for index, item in enumerate(alerts_in):
            try:
                alert = _alert_from(item, envelope, conv, ctx)
                alerts.append(alert)
                unparsed = alert.fields.get("value_unparsed", "")
                if is_non_finite(unparsed):
                    # Kept without a value (never a stored NaN); said once per alert, so the rule is fixed.
                    notices.append(Notice(source=SOURCE, kind="value_not_finite", level="warning",
                                          message=f"alerts[{index}] ({alert.fields.get('alertname') or '?'}) has "
                                                  f"the value {unparsed[:40]!r}, not a finite number: no "
                                                  f"severity is decided from it; check the alert rule's query",
                                          details={"index": index, "group_key": alert.group_key}))
            except _SkipAlert as exc:
                problems.append(f"alerts[{index}]: {exc}")
                notices.append(Notice(source=SOURCE, kind="alert_skipped", level="warning",
                                      message=f"skipped alerts[{index}] of the Alertmanager webhook: {exc}",
                                      details={"index": index, "group_key": envelope.group_key}))
        if not alerts:
            raise BadPayload("no usable alert in the Alertmanager webhook: " + "; ".join(problems))

        if envelope.version and envelope.version != _SUPPORTED_VERSION:
            # Accepted because the alerts had the version-4 shape; recorded so an operator notices an upgrade.
            notices.append(Notice(source=SOURCE, kind="unknown_version", level="warning",
                                  message=f"Alertmanager webhook version {envelope.version!r} is not the "
                                          f"documented version 4; parsed it as version 4",
                                  details={"version": envelope.version}))
        if envelope.truncated > 0:
            # Alertmanager's `max_alerts` dropped alerts from this notification: they never reach us.
            notices.append(Notice(source=SOURCE, kind="alerts_truncated", level="warning",
                                  message=f"Alertmanager truncated {envelope.truncated} alert(s) of group "
                                          f"{envelope.group_key!r} (max_alerts of the webhook_config); "
                                          f"raise max_alerts, up to the bridge's {MAX_ALERTS_SETTING}",
                                  details={"truncated_alerts": envelope.truncated,
                                           "group_key": envelope.group_key}))
        return Parsed(alerts=alerts, notices=notices)


class _SkipAlert(Exception):
    """One entry of `alerts[]` is unusable; the others may still be."""


class _Envelope:
    """The group-level facts of one notification, shared by all its alerts."""

    def __init__(self, *, version: str, group_key: str, receiver: str, status: str, external_url: str,
                 notification_reason: str, truncated: int) -> None:
        self.version = version
        self.group_key = group_key
        self.receiver = receiver
        self.status = status
        self.external_url = external_url
        self.notification_reason = notification_reason
        self.truncated = truncated


class _Convention:
    """Which labels/annotations carry dimension, value and categories."""

    def __init__(self, dimension_label: str, value_annotation: str, value_label: str, category_label: str) -> None:
        self.dimension_label = dimension_label
        self.value_annotation = value_annotation
        self.value_label = value_label
        self.category_label = category_label

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> _Convention:
        def pick(key: str, default: str) -> str:
            value = settings.get(key)
            return str(value) if value else default

        return cls(
            dimension_label=pick("dimension_label", DEFAULT_DIMENSION_LABEL),
            value_annotation=pick("value_annotation", DEFAULT_VALUE_ANNOTATION),
            value_label=pick("value_label", DEFAULT_VALUE_LABEL),
            category_label=pick("category_label", DEFAULT_CATEGORY_LABEL),
        )


def _alert_from(item: Any, env: _Envelope, conv: _Convention, ctx: ReceiverContext) -> Alert:
    if not isinstance(item, Mapping):
        raise _SkipAlert(f"expected an object, got {_json_type(item)}")
    labels = _string_map(item.get("labels"), "labels")
    annotations = _string_map(item.get("annotations"), "annotations")
    if not labels:
        # An alert's identity is its label set: without labels there is nothing to group or route on.
        raise _SkipAlert("the alert has no labels")

    status = _as_str(item.get("status")) or env.status
    try:
        state = AlertState(status)
    except ValueError:
        raise _SkipAlert(f"status {status!r} is neither 'firing' nor 'resolved'") from None

    fingerprint = _as_str(item.get("fingerprint"))
    # Without a fingerprint (hand-made or other Alertmanager-compatible senders), hash the label set: that is
    # what Alertmanager's fingerprint is too, so identity stays stable across notifications.
    identity = fingerprint or "labels-" + labels_hash(labels)
    starts_at = _as_str(item.get("startsAt"))
    ends_at = _as_str(item.get("endsAt"))
    if ends_at == _GO_ZERO_TIME:
        ends_at = ""

    alertname = labels.get("alertname", "")
    title = annotations.get("summary", "").strip() or _title_from_labels(alertname, labels, identity)

    seen: set[str] = set()
    parts: list[str] = []
    for name in _MESSAGE_ANNOTATIONS:
        text = annotations.get(name, "").strip()
        if text and text not in seen:
            seen.add(text)
            parts.append(text)
    message = "\n\n".join(parts)

    links: list[Link] = []
    generator_url = _as_str(item.get("generatorURL"))
    if generator_url:
        links.append(Link(generator_url, "Prometheus"))
    if env.external_url:
        links.append(Link(env.external_url, "Alertmanager"))
    runbook = annotations.get("runbook_url", "").strip()
    if runbook:
        links.append(Link(runbook, "Runbook"))

    fields: dict[str, str] = {
        "alertname": alertname,
        "severity": labels.get("severity", ""),
        "status": state.value,
        "receiver": env.receiver,
        "group_key": env.group_key,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "fingerprint": fingerprint,
    }
    if env.notification_reason:
        fields["notification_reason"] = env.notification_reason
    if env.truncated > 0:
        fields["truncated_alerts"] = str(env.truncated)
    if env.version and env.version != _SUPPORTED_VERSION:
        fields["webhook_version"] = env.version
    for key, text in labels.items():
        fields[f"label.{key}"] = text
    for key, text in annotations.items():
        fields[f"annotation.{key}"] = text

    raw_value = annotations.get(conv.value_annotation) or labels.get(conv.value_label)
    value = parse_number(raw_value)
    if raw_value and value is None:
        # Kept visible: a rule that expected a number sees why there is none.
        fields["value_unparsed"] = raw_value
    dimension = labels.get(conv.dimension_label, "").strip()
    dimensions = {dimension: value} if dimension and value is not None else {}

    event_id = f"{identity}:{state.value}:{starts_at}"
    if state is AlertState.RESOLVED and ends_at:
        event_id += f":{ends_at}"
    if value is not None:
        # A repeat notification carries the annotations of the latest evaluation: when the observed value has
        # moved (6 % -> 25 % of users), it may call for a higher severity and must not be dropped as a duplicate.
        event_id += f":value={value!r}"

    return Alert(
        source=SOURCE,
        source_event_id=event_id,
        received_at=ctx.now,
        title=title,
        state=state,
        group_key=f"{SOURCE}:{identity}",
        message=message,
        tags=tuple((k, v) for k, v in sorted(labels.items())),
        service=labels.get("service") or labels.get("job") or None,
        value=value,
        dimensions=dimensions,
        categories=split_categories(labels.get(conv.category_label)),
        links=tuple(links),
        fields=fields,
        raw=dict(item),
    )


def _title_from_labels(alertname: str, labels: Mapping[str, str], identity: str) -> str:
    if not alertname:
        return f"Alertmanager alert {identity}"
    keys = [f"{k}={labels[k]}" for k in _KEY_LABELS if labels.get(k)]
    return f"{alertname} ({', '.join(keys)})" if keys else alertname


def labels_hash(labels: Mapping[str, str]) -> str:
    """A stable hex digest of a label set (sorted `name=value` pairs), used when no fingerprint is given."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


def parse_number(raw: Any) -> float | None:
    """Parse an observed value tolerantly; None when it is not a finite number.

    Accepts numbers, and strings such as `"12.5"`, `" 12.5 "`, `"12.5%"`, `"1.2e+01"`, `"1,234.5"`. Rejects
    booleans (JSON `true` is not 1 %), NaN and infinities (they would break every threshold comparison), and
    anything else (a humanized `"1.2k"` is ambiguous, so it is refused rather than guessed).
    """
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        try:
            number = float(raw)
        except OverflowError:  # an integer past any float: a generic source's to_number("9999...") makes one
            return None
        return number if math.isfinite(number) else None
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if text.endswith("%"):
        text = text[:-1].strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if not _NUMBER.match(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


_NON_FINITE = re.compile(r"^[+-]?(?:nan|inf|infinity)$", re.IGNORECASE)


def is_non_finite(raw: Any) -> bool:
    """True when `raw` is meant as a number but is NaN or infinite: "NaN", "+Inf" (what Prometheus renders for
    `{{ $value }}` of a division by zero), "-Infinity", "1e999", or a float or integer past any float.

    `parse_number` gives None for these as for any non-number; receivers use this to report them with a notice,
    because they mean a broken query rather than a template that carries no value.
    """
    if raw is None or isinstance(raw, bool):
        return False
    if isinstance(raw, (int, float)):
        return parse_number(raw) is None
    if not isinstance(raw, str):
        return False
    text = raw.strip().removesuffix("%").strip()
    if _NON_FINITE.match(text):
        return True
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    return bool(_NUMBER.match(text)) and not math.isfinite(float(text))


def split_categories(raw: Any) -> frozenset[str]:
    """Categories from a comma-separated string or a list of strings, lower-cased, blanks dropped."""
    if raw is None:
        return frozenset()
    items = raw if isinstance(raw, (list, tuple, set, frozenset)) else str(raw).split(",")
    out = set()
    for item in items:
        if item is None:
            continue
        for part in str(item).split(","):
            part = part.strip().lower()
            if part:
                out.add(part)
    return frozenset(out)


def _load_json(body: bytes) -> dict[str, Any]:
    data = load_json(body)
    if not isinstance(data, dict):
        raise BadPayload(f"the body must be a JSON object (the Alertmanager webhook), got {_json_type(data)}")
    return data


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _SkipAlert(f"'{what}' must be an object of strings, got {_json_type(value)}")
    # Label and annotation values are strings in Alertmanager; other senders may send numbers.
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
