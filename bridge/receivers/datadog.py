"""Datadog monitor webhooks: verify the shared token, parse one notification into one `Alert`.

Datadog has no fixed webhook schema: the body is whatever JSON template the Webhooks tile holds, with
`$VARIABLES` substituted as strings (reference/datadog.md §0, §2). We ship our own template
(`webhooks/datadog/payload.json`), but parse defensively so that Keep's template (the captured fixtures),
Datadog's default payload and hand-written templates still produce a usable alert.

Everything here is pure: no clock (`ctx.now` is the receipt time), no network, no environment reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.config import reveal
from bridge.errors import AuthError, BadPayload
from bridge.model import SECURITY, Alert, AlertState, Link, Notice, Tag, parse_tags
from bridge.receivers.base import InboundRequest, Parsed, ReceiverContext, constant_time_equals, presented_token
from bridge.receivers.jsonbody import load_json, storable_text

SOURCE = "datadog"

# Canonical spellings of `$ALERT_TRANSITION` (Datadog webhooks docs, "Variables"). Keys are the lowercase letters
# only, so "Re-Triggered", "re_triggered" and "RETRIGGERED" all land on the same entry.
_TRANSITIONS = {
    "triggered": "Triggered",
    "retriggered": "Re-Triggered",
    "warn": "Warn",
    "warning": "Warn",
    "rewarn": "Re-Warn",
    "rewarning": "Re-Warn",
    "nodata": "No Data",
    "renodata": "Re-No Data",
    "recovered": "Recovered",
    "recovery": "Recovered",
    "renotify": "Renotify",
}

# `[P2] [Warn] Name` or `[Triggered on {service:x}] Name` (reference/datadog.md §2.2, `$EVENT_TITLE`).
_TITLE_PREFIX = re.compile(
    r"^\s*(?:\[(?P<priority>P\d)\]\s*)?"
    r"(?:\[(?P<transition>[^\[\]{}]*?)(?:\s+on\s+\{(?P<group>[^{}]*)\})?\]\s*)?"
)
_PRIORITY = re.compile(r"^P?([1-5])$", re.IGNORECASE)
# A value Datadog left unsubstituted (a variable that does not exist, or someone POSTing the raw template).
_UNSUBSTITUTED = re.compile(r"^\$[A-Z][A-Z0-9_]*(?:\[[^\]]*\])?$")

# The bridge.value convention (reference/datadog.md §2.4): `bridge.value: {{value}}` in the monitor message.
_VALUE_LINE = re.compile(r"(?<![\w.])bridge\.value[^\S\r\n]*[:=][^\S\r\n]*(?P<rest>[^\r\n]*)", re.IGNORECASE)
# Thousands separators only in groups of three ("1,234.5"); "12,5" is ambiguous and is refused, not guessed.
_NUMBER = re.compile(
    r"^(?P<num>[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"[^\S\r\n]*%?"
    r"(?=$|\s|[.,;:!?)\]](?:\s|$))"
)
_MARKDOWN_NOISE = str.maketrans("", "", "*`_")

# Hosts of the Datadog web UI; the monitor page lives on the same host as the `$LINK` event page.
_DATADOG_DOMAINS = ("datadoghq.com", "datadoghq.eu", "ddog-gov.com")
_DEFAULT_UI_HOST = "app.datadoghq.com"

# Key aliases, ours first: our template (reference/datadog.md §5), Keep's (fixtures/README.md), the default
# payload (§2.1), and common hand-written spellings. Lookups are case-insensitive.
_K_ID = ("id", "event_id")
_K_MONITOR = ("alert_id", "monitor_id")
_K_CYCLE = ("alert_cycle_key", "cycle_key")
_K_AGGREG = ("aggreg_key", "aggregation_key")
_K_TRANSITION = ("transition", "alert_transition")
_K_ALERT_TYPE = ("alert_type",)
_K_PRIORITY = ("priority", "alert_priority", "severity")  # Keep puts $ALERT_PRIORITY in "severity"
_K_TITLE = ("title", "event_title")
_K_ALERT_TITLE = ("alert_title",)
_K_TEXT = ("text", "text_only_msg")
_K_BODY = ("body", "event_msg", "message", "msg")
_K_STATUS = ("status", "alert_status")
_K_QUERY = ("query", "alert_query")
_K_METRIC = ("metric", "alert_metric")
_K_SCOPE = ("scope", "scopes", "alert_scope")
_K_TAGS = ("tags",)
_K_HOSTNAME = ("hostname", "host")
_K_EVENT_TYPE = ("event_type",)
_K_DATE = ("date", "event_date")
_K_LAST_UPDATED = ("last_updated",)
_K_LINK = ("link", "url", "event_url")
_K_SNAPSHOT = ("snapshot",)

# `$SECURITY_*` variables, as keys of our template's "security" object (or flat "security_<key>" keys).
_SECURITY_SCALARS = ("rule_name", "rule_id", "rule_type", "signal_id", "signal_severity", "signal_title",
                     "signal_msg")
_SECURITY_JSON = ("signal_attributes", "rule_matched_queries", "rule_group_by_fields")
_SECURITY_FIELDS = ("rule_name", "signal_id", "signal_severity", "signal_title", "rule_type", "rule_id")
# JSON-valued variables may render as an empty container for non-security monitors (unverified): such a value
# must not turn an ordinary alert into a security incident.
_EMPTY_JSON = frozenset({"", "{}", "[]", "null", '""'})

_USABLE = ("id", "alert_id/monitor_id", "title/alert_title", "transition/alert_transition", "text/body")


def normalize_transition(text: str) -> str:
    """The canonical spelling of a Datadog `$ALERT_TRANSITION`, or the stripped input when it is not one.

    Canonical values: "Triggered", "Re-Triggered", "Warn", "Re-Warn", "No Data", "Re-No Data", "Recovered",
    "Renotify". Case, spaces, hyphens and underscores do not matter ("re_triggered" -> "Re-Triggered",
    "NODATA" -> "No Data"). Unknown values (older docs list "Null") are returned unchanged but stripped, so
    rules can still match them.
    """
    raw = (text or "").strip()
    return _TRANSITIONS.get(re.sub(r"[^a-z]", "", raw.lower()), raw)


def is_recovery(transition: str) -> bool:
    """True for "Recovered" and any transition that starts with "Recovered" (as Elastic's integration does)."""
    return re.sub(r"[^a-z]", "", (transition or "").lower()).startswith(("recovered", "recovery"))


def extract_bridge_value(text: str) -> float | None:
    """The number on the first `bridge.value: <number>` line of a monitor message, or None.

    This is the incident-bridge convention for carrying Datadog's `{{value}}` (no webhook variable holds the
    observed value; reference/datadog.md §2.4). Tolerated: markdown bold/code around key or number
    (`**bridge.value:** 23`), `=` instead of `:`, spaces, a trailing `%`, thousands separators in groups of
    three ("1,234.5"). A line whose value is empty or not a number (a no-data notification renders
    `{{value}}` empty) is skipped in favour of a later line. NaN and infinities give None.
    """
    if not text:
        return None
    cleaned = text.translate(_MARKDOWN_NOISE)
    for match in _VALUE_LINE.finditer(cleaned):
        number = _NUMBER.match(match.group("rest").strip())
        if not number:
            continue
        try:
            value = float(number.group("num").replace(",", ""))
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


_NON_FINITE_WORD = re.compile(r"^[-+]?(?:nan|inf(?:inity)?)\b", re.IGNORECASE)


def _non_finite_value(text: str) -> str:
    """The value of the first `bridge.value:` line that reads as NaN or an infinity ("nan", "-Inf", "1e999"), or
    "". Such a value is dropped like an empty one, but it means the monitor's query is broken, so it is reported
    (a notice and `fields["value_unparsed"]`) instead of being ignored in silence."""
    if not text:
        return ""
    for match in _VALUE_LINE.finditer(text.translate(_MARKDOWN_NOISE)):
        rest = match.group("rest").strip()
        word = _NON_FINITE_WORD.match(rest)
        if word:
            return word.group(0)
        number = _NUMBER.match(rest)
        if number is None:
            continue
        try:
            parsed = float(number.group("num").replace(",", ""))
        except ValueError:
            continue
        if not math.isfinite(parsed):  # "1e999" is a number to the pattern, and infinite to float()
            return number.group("num")
    return ""


class DatadogReceiver:
    """Receiver for `POST /webhooks/datadog`: one Datadog notification in, one `Alert` out."""

    name = SOURCE

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Require the shared token (`settings["token"]`, from BRIDGE_WEBHOOK_TOKEN) when one is configured.

        Datadog signs nothing (reference/datadog.md §4), so the token travels as `Authorization: Bearer <token>`
        (a custom header holding a hidden custom variable) or as the basic-auth password in the webhook URL.
        Without a configured token this does nothing: the server layer only allows that on loopback. Error
        messages never contain the presented or the expected token.
        """
        expected = reveal(ctx.settings.get("token"))
        if not expected:
            return
        presented = presented_token(request.headers)
        if presented is None:
            raise AuthError(
                "missing webhook token: send it as the header 'Authorization: Bearer <token>' (a custom header "
                "of the Datadog webhook, with the token in a hidden custom variable) or as the basic-auth "
                "password in the webhook URL"
            )
        if _UNSUBSTITUTED.match(presented):
            raise AuthError(
                "the presented webhook token is an unsubstituted Datadog variable: define the custom variable "
                "the 'Authorization' header refers to in the Datadog Webhooks tile"
            )
        if not constant_time_equals(presented, expected):
            raise AuthError(
                "wrong webhook token: the token Datadog sends must equal BRIDGE_WEBHOOK_TOKEN of the bridge"
            )

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Turn one webhook body (JSON, or form-encoded JSON) into exactly one `Alert`.

        Raises `BadPayload` (never anything else for a sender's input) when the body is not JSON, not an
        object, or carries none of the keys any known template uses.
        """
        payload = _decode_body(request)
        alert, notices = build_alert(payload, request.body, ctx)
        return Parsed(alerts=[alert], notices=notices)


def build_alert(payload: Mapping[str, Any], body: bytes, ctx: ReceiverContext) -> tuple[Alert, list[Notice]]:
    """Normalize a decoded Datadog payload; `body` is only used to derive an id when `$ID` is missing.

    Returns the alert and notices for the operator (a weak grouping key when the template lacks monitor ids).
    """
    p = _Payload(payload)
    if not p.usable():
        found = ", ".join(sorted(str(k) for k in payload)[:12]) or "none"
        raise BadPayload(
            "no usable Datadog fields: expected at least one of " + ", ".join(_USABLE)
            + f" with a non-empty value (keys found: {found}); paste webhooks/datadog/payload.json as the "
            "webhook payload"
        )

    event_title = p.get(*_K_TITLE)
    alert_title = p.get(*_K_ALERT_TITLE)
    title_parts = _split_title(event_title or alert_title)

    transition_raw = p.get(*_K_TRANSITION) or title_parts.transition
    alert_type = p.get(*_K_ALERT_TYPE)
    if not transition_raw and alert_type.lower() == "success":
        # The default payload has no transition; a "success" event is Datadog's recovery notification.
        transition_raw = "Recovered"
    transition = normalize_transition(transition_raw)
    resolved = is_recovery(transition_raw)

    monitor_id = p.get(*_K_MONITOR)
    scope = p.get(*_K_SCOPE)
    scope_items = _split_scope(scope)
    security = p.security()

    tags = _merge_tags(_tags_from(p.raw_value(*_K_TAGS)), scope_items)
    source_event_id = p.get(*_K_ID) or "sha256:" + hashlib.sha256(body).hexdigest()

    text = p.get(*_K_TEXT)
    body_text = p.get(*_K_BODY)
    message = _strip_markdown_wrapper(text or body_text or security.get("signal_msg", ""))
    value = extract_bridge_value(text)
    if value is None:
        value = extract_bridge_value(body_text)

    dimension_names = [v for k, v in tags if k == "dimension" and v]
    dimensions = {name: value for name in dimension_names} if value is not None else {}
    categories = {v.lower() for k, v in tags if k == "category" and v}
    if _is_security(security):
        categories.add(SECURITY)

    group_key, weak = _group_key(p, monitor_id, scope_items, security, title_parts, source_event_id)
    title = (event_title or alert_title or security.get("signal_title", "")
             or _fallback_title(monitor_id, scope_items, transition))
    # The first key that holds a monitor priority: another template may put the event priority ("normal") first.
    priority = next((pr for key in _K_PRIORITY if (pr := _priority(p.get(key)))), "") or _priority(
        title_parts.priority)

    fields: dict[str, str] = {
        "transition": transition,
        "alert_type": alert_type,
        "priority": priority,
        "monitor_id": monitor_id,
        "event_type": p.get(*_K_EVENT_TYPE),
        "scope": ",".join(scope_items),
        "query": p.get(*_K_QUERY),
        "aggreg_key": p.get(*_K_AGGREG),
        "cycle_key": p.get(*_K_CYCLE),
        "org_id": p.org("id"),
        "hostname": p.get(*_K_HOSTNAME),
        "status": p.get(*_K_STATUS),
        "event_date": _iso_date(p.get(*_K_DATE) or p.get(*_K_LAST_UPDATED)),
        "renotify": "true" if transition == "Renotify" or transition.startswith("Re-") else "false",
    }
    if _is_security(security):
        for key in _SECURITY_FIELDS:
            fields[f"security_{key}"] = security.get(key, "")
    # Never a stored NaN or infinity: the value is dropped, and what was received is kept visible.
    not_finite = "" if value is not None else (_non_finite_value(text) or _non_finite_value(body_text))
    if not_finite:
        fields["value_unparsed"] = not_finite

    alert = Alert(
        source=SOURCE,
        source_event_id=source_event_id,
        received_at=ctx.now,
        title=title,
        message=message,
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        group_key=group_key,
        tags=tags,
        service=next((v for k, v in tags if k == "service" and v), None),
        metric=p.get(*_K_METRIC) or None,
        value=value,
        dimensions=dimensions,
        categories=frozenset(categories),
        links=_links(p.get(*_K_LINK), monitor_id, p.get(*_K_SNAPSHOT), ctx.settings.get("site")),
        fields=fields,
        raw=dict(payload),
    )
    notices: list[Notice] = []
    if weak:
        notices.append(Notice(
            source=SOURCE,
            kind="weak_group_key",
            level="warning",
            message=("Datadog payload has no alert_cycle_key or monitor id, so trigger and recovery are matched "
                     f"by {weak}; use webhooks/datadog/payload.json as the webhook payload"),
            details={"group_key": group_key, "source_event_id": source_event_id},
        ))
    if not_finite:
        notices.append(Notice(
            source=SOURCE,
            kind="value_not_finite",
            level="warning",
            message=(f"the bridge.value line of monitor {monitor_id or '?'} reads {not_finite[:40]!r}, not a finite "
                     "number: the alert carries no value, so no severity is decided from it; check the monitor's "
                     "query"),
            details={"group_key": group_key, "source_event_id": source_event_id},
        ))
    return alert, notices


# --- body decoding ---------------------------------------------------------------------------------------------


def _decode_body(request: InboundRequest) -> dict[str, Any]:
    """The body as a JSON object, from JSON or from a form-encoded body ("Encode as form")."""
    if not request.body or not request.body.strip():
        raise BadPayload("empty body: expected a JSON object from the Datadog webhook payload template")
    try:
        text = request.body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadPayload(f"body is not UTF-8 text (invalid byte at position {exc.start})") from None
    content_type = request.headers.get("content-type", "").lower()
    stripped = text.lstrip()
    # A JSON-looking body is JSON whatever the header says; otherwise a form header (or an unlabelled
    # key=value body) means Datadog's "Encode as form".
    looks_form = "x-www-form-urlencoded" in content_type or (
        "json" not in content_type and not stripped.startswith(("{", "[", '"')) and "=" in stripped
    )
    data = _parse_form(text) if looks_form and not stripped.startswith("{") else _parse_json(text)
    if not isinstance(data, dict):
        raise BadPayload(f"expected a JSON object (the Datadog webhook payload template), got a JSON "
                         f"{_json_type(data)}")
    return data


def _parse_json(text: str) -> Any:
    try:
        return load_json(text)
    except BadPayload as exc:
        if "not valid JSON" not in exc.message:
            raise
        raise BadPayload(f"{exc.message}; if the webhook payload has a $VARIABLE outside quotes, an empty value "
                         "breaks the JSON: quote it") from None


def _parse_form(text: str) -> dict[str, Any]:
    """A form-encoded body: Datadog's wire format for "Encode as form" is undocumented, so accept the shapes
    it could plausibly take: one field holding the whole JSON template, or one field per top-level key (nested
    objects as JSON text or as `org[id]=` brackets)."""
    # Percent-decoding can produce U+0000 ("%00"), which the store cannot hold: replaced as load_json does.
    pairs = [(storable_text(key), storable_text(value))
             for key, value in urllib.parse.parse_qsl(text.strip(), keep_blank_values=True)]
    if not pairs:
        raise BadPayload("form-encoded body has no fields: expected the Datadog webhook payload template")
    if len(pairs) == 1:
        key, value = pairs[0]
        for candidate in (value, key):
            whole = _loads_object(candidate) if candidate.lstrip().startswith("{") else None
            if whole is not None:
                return whole
    out: dict[str, Any] = {}
    for key, value in pairs:
        bracket = re.fullmatch(r"([^\[\]]+)\[([^\[\]]+)\]", key)
        if bracket:
            parent = out.get(bracket.group(1))
            if not isinstance(parent, dict):
                parent = out[bracket.group(1)] = {}
            parent[bracket.group(2)] = value
        elif key.lower() in ("org", "security") and value.lstrip().startswith("{"):
            try:
                out[key] = load_json(value, what=f"form field {key!r}")
            except BadPayload:
                out[key] = value
        else:
            out[key] = value
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null"


# --- payload access ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """Any JSON value as the string Datadog would have sent (every quoted variable arrives as a string)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "" if _UNSUBSTITUTED.match(value.strip()) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class _Payload:
    """Case-insensitive, alias-aware reads of a decoded payload."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._by_key = {str(k).lower(): v for k, v in data.items()}

    def raw_value(self, *names: str) -> Any:
        """The first present, non-empty value under any of `names`, untouched."""
        for name in names:
            value = self._by_key.get(name)
            if value not in (None, "", [], {}):
                return value
        return None

    def get(self, *names: str) -> str:
        """The first non-empty value under any of `names`, as a stripped string ("" when none)."""
        for name in names:
            value = _text(self._by_key.get(name)).strip()
            if value:
                return value
        return ""

    def org(self, key: str) -> str:
        """`org.<key>` (our template, Keep, default payload) or flat `org_<key>`."""
        org = self._by_key.get("org")
        if isinstance(org, str) and org.lstrip().startswith("{"):
            org = _loads_object(org)
        if isinstance(org, Mapping):
            value = _text(org.get(key)).strip()
            if value:
                return value
        return self.get(f"org_{key}")

    def security(self) -> dict[str, str]:
        """The `$SECURITY_*` values that are filled, keyed without the prefix (rule_name, signal_id...)."""
        nested = self._by_key.get("security")
        if isinstance(nested, str) and nested.lstrip().startswith("{"):
            nested = _loads_object(nested)
        nested_by_key = {str(k).lower(): v for k, v in nested.items()} if isinstance(nested, Mapping) else {}
        out: dict[str, str] = {}
        for key in _SECURITY_SCALARS + _SECURITY_JSON:
            value = _text(nested_by_key.get(key)).strip() or self.get(f"security_{key}")
            if value:
                out[key] = value
        return out

    def usable(self) -> bool:
        """True when at least one key that identifies a Datadog notification has a value."""
        return any(self.get(*keys) for keys in (_K_ID, _K_MONITOR, _K_TITLE + _K_ALERT_TITLE, _K_TRANSITION,
                                                 _K_TEXT + _K_BODY))


def _loads_object(text: str) -> dict[str, Any] | None:
    try:
        value = load_json(text)
    except BadPayload:
        return None
    return value if isinstance(value, dict) else None


def _is_security(security: Mapping[str, str]) -> bool:
    if any(security.get(key) for key in _SECURITY_SCALARS):
        return True
    return any(security.get(key, "") not in _EMPTY_JSON for key in _SECURITY_JSON)


# --- tags, titles, keys, links ------------------------------------------------------------------------------------


def _tags_from(value: Any) -> tuple[Tag, ...]:
    """`$TAGS` as (key, value) pairs without the bare `monitor` tag every monitor event carries."""
    if value is None:
        return ()
    if isinstance(value, list):
        parsed: Iterable[Tag] = (t for item in value for t in parse_tags(_text(item)))
    elif isinstance(value, Mapping):
        parsed = ((str(k), _text(v)) for k, v in value.items())
    else:
        parsed = parse_tags(_text(value))
    return tuple(t for t in parsed if t != ("monitor", "") and t[0])


def _split_scope(scope: str) -> list[str]:
    """`$ALERT_SCOPE` items, stripped, in order ("availability-zone:us-east-1a, role:computing-node")."""
    return [item.strip() for item in scope.split(",") if item.strip()]


def _merge_tags(tags: tuple[Tag, ...], scope_items: list[str]) -> tuple[Tag, ...]:
    """`$TAGS` then the scope's tags (the triggering group), exact duplicates dropped, order kept."""
    out: list[Tag] = []
    seen: set[Tag] = set()
    scope_tags = tuple(t for item in scope_items for t in parse_tags(item) if t[0] not in ("*", ""))
    for tag in tags + scope_tags:
        if tag not in seen:
            seen.add(tag)
            out.append(tag)
    return tuple(out)


class _TitleParts:
    """What a Datadog event title says besides the monitor name."""

    def __init__(self, priority: str, transition: str, group: str, name: str) -> None:
        self.priority = priority
        self.transition = transition
        self.group = group
        self.name = name


def _split_title(title: str) -> _TitleParts:
    """Split `[P2] [Warn] Name` / `[Triggered on {group}] Name` into its parts.

    A bracket is only taken as a transition when it is one, so a monitor named "[prod] DB down" keeps its name.
    """
    match = _TITLE_PREFIX.match(title or "")
    if not match or not match.group(0):
        return _TitleParts("", "", "", (title or "").strip())
    transition = (match.group("transition") or "").strip()
    if transition and not (normalize_transition(transition) in _TRANSITIONS.values() or is_recovery(transition)):
        if not match.group("priority"):
            return _TitleParts("", "", "", title.strip())
        # "[P2] [prod] Name": keep the bracket as part of the name.
        name = title[title.index("]") + 1:].strip()
        return _TitleParts(match.group("priority"), "", "", name)
    return _TitleParts(match.group("priority") or "", transition, (match.group("group") or "").strip(),
                       title[match.end():].strip())


def _priority(text: str) -> str:
    """Monitor priority "P1".."P5" from "P2", "p2" or "2"; "" for anything else (e.g. event priority "normal")."""
    match = _PRIORITY.match((text or "").strip())
    return f"P{match.group(1)}" if match else ""


def _group_key(p: _Payload, monitor_id: str, scope_items: list[str], security: Mapping[str, str],
               title: _TitleParts, source_event_id: str) -> tuple[str, str]:
    """The alert-cycle key and, when it is a weak one, how it was made (for a notice).

    `$ALERT_CYCLE_KEY` links trigger to resolve [WH]; `$ALERT_ID` + sorted scope is the deterministic fallback
    (reference/datadog.md §3). Never a timestamp: every retry would become a new incident.
    """
    cycle_key = p.get(*_K_CYCLE)
    if cycle_key:
        return f"datadog:cycle:{cycle_key}", ""
    sorted_scope = ",".join(sorted(set(scope_items)))
    if monitor_id:
        return f"datadog:{monitor_id}:{sorted_scope}", ""
    if security.get("signal_id"):
        return f"datadog:signal:{security['signal_id']}", ""
    aggreg_key = p.get(*_K_AGGREG)
    if aggreg_key:
        return f"datadog:aggreg:{aggreg_key}", ""
    if title.name:
        group = sorted_scope or ",".join(sorted({g.strip() for g in title.group.split(",") if g.strip()}))
        key = f"datadog:title:{title.name}"
        return (f"{key}:{group}" if group else key), "the title"
    return f"datadog:event:{source_event_id}", "the event id (a recovery will not resolve it)"


def _fallback_title(monitor_id: str, scope_items: list[str], transition: str) -> str:
    what = f"Datadog monitor {monitor_id}" if monitor_id else "Datadog alert"
    if scope_items:
        what += f" on {','.join(scope_items)}"
    return f"{what}: {transition}" if transition else what


def _strip_markdown_wrapper(text: str) -> str:
    """Drop the `%%%` fences Datadog wraps `$EVENT_MSG` in (`%%%\\n ... \\n%%%`)."""
    stripped = text.strip()
    if stripped.startswith("%%%"):
        stripped = stripped[3:]
        if stripped.rstrip().endswith("%%%"):
            stripped = stripped.rstrip()[:-3]
    return stripped.strip()


def _iso_date(text: str) -> str:
    """`$DATE` (epoch milliseconds as a string) as ISO-8601 UTC; seconds and ISO input tolerated; "" if unusable."""
    if not text:
        return ""
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return ""
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return _iso(parsed.astimezone(UTC))
    if not math.isfinite(number):
        return ""
    # Epoch ms of any date after 1973 exceeds 1e11; smaller numbers are seconds (e.g. a $DATE_POSIX template).
    seconds = number / 1000 if abs(number) >= 1e11 else number
    try:
        return _iso(datetime.fromtimestamp(seconds, tz=UTC))
    except (OverflowError, OSError, ValueError):
        return ""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


def _links(link: str, monitor_id: str, snapshot: str, site: Any) -> tuple[Link, ...]:
    """Event page, monitor page and graph snapshot; only http(s) URLs, so nothing else reaches a responder."""
    out: list[Link] = []
    if _is_http_url(link):
        out.append(Link(link, "Datadog event"))
    if monitor_id.isdigit():
        out.append(Link(f"https://{_ui_host(link, site)}/monitors/{monitor_id}", "Datadog monitor"))
    if _is_http_url(snapshot):
        out.append(Link(snapshot, "Graph snapshot"))
    return tuple(out)


def _is_http_url(text: str) -> bool:
    return text.lower().startswith(("https://", "http://"))


def _ui_host(link: str, site: Any) -> str:
    """The Datadog web host of this org: the host of `$LINK` when it is a Datadog host (that covers us3, us5,
    eu, ap1, gov and custom sub-domains), else the configured site, else app.datadoghq.com."""
    try:
        host = (urllib.parse.urlsplit(link).hostname or "") if link else ""
    except ValueError:
        host = ""
    if host and any(host == d or host.endswith("." + d) for d in _DATADOG_DOMAINS):
        return f"app.{host}" if host in _DATADOG_DOMAINS else host
    site_text = str(site or "").strip().lower()
    if site_text and re.fullmatch(r"[a-z0-9.-]+", site_text):
        return f"app.{site_text}" if site_text in _DATADOG_DOMAINS else site_text
    return _DEFAULT_UI_HOST
